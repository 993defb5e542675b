"""Key bindings remapped in settings.toml ([ui] keys: binding id -> keys)."""

from __future__ import annotations

from pathlib import Path

from slmchat.config import Settings, load_settings, save_settings
from slmchat.tui.app import SlmChatApp
from slmchat.tui.keys import binding_ids
from tests.tui.conftest import SIZE, settle
from tests.tui.fakes import FakeEngine


def test_every_binding_has_a_unique_id() -> None:
    ids = binding_ids(SlmChatApp.BINDINGS)
    assert {"chat.regenerate", "chat.compare", "chat.inspect_prompt", "chat.branch_prev",
            "log.branch_next", "inspector.tokens", "compare.keep_left",
            "app.models"} <= set(ids)
    assert all("." in i for i in ids)


def test_keys_round_trip_through_settings_toml(tmp_path: Path) -> None:
    settings = Settings()
    settings.ui.keys = {"chat.regenerate": "f12", "chat.compare": "ctrl+k"}
    path = save_settings(settings, tmp_path / "settings.toml")
    assert '"chat.regenerate" = "f12"' in path.read_text()
    loaded, problem = load_settings(path)
    assert problem is None and loaded.ui.keys == settings.ui.keys


async def test_a_remapped_key_runs_its_action(make_app) -> None:
    settings = Settings()
    settings.ui.keys = {"chat.regenerate": "f12", "no.such.binding": "f1"}
    engine = FakeEngine(replies=["one", "two", "three"])
    app = make_app(engine, settings=settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert any("no.such.binding" in n.message for n in app._notifications)
        await pilot.press(*"hi", "enter")
        await settle(pilot)
        await pilot.press("ctrl+r")  # no longer regenerate
        await settle(pilot)
        assert len(engine.calls) == 1
        await pilot.press("f12")
        await settle(pilot)
        assert len(engine.calls) == 2
        assert app.chat.log_view.views()[-1].content == "two"
