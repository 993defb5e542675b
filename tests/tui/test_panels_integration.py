"""The real model and fine-tune panels open inside the real app and hand a spec back."""

from __future__ import annotations

from pathlib import Path

from slmchat.engine.model.spec import ModelSpec
from tests.tui.conftest import settle
from tests.tui.fakes import FakeEngine

NARROW = (100, 30)  # below 110 columns the panels take the whole screen


async def test_models_panel_opens_in_app_and_loads_choice(make_app, tiny_llama_dir: Path) -> None:
    from slmchat.tui.screens.models import ModelsScreen

    engine = FakeEngine()
    app = make_app(engine)
    async with app.run_test(size=NARROW) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+o")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        assert screen.panel.engine is engine
        screen.dismiss(ModelSpec(path=str(tiny_llama_dir), dtype="fp32"))
        await settle(pilot)
        assert not isinstance(app.screen, ModelsScreen)
        assert engine.loads[-1].path == str(tiny_llama_dir)
