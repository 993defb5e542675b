"""Pilot tests of app wiring: model loading, panels hooks, theme, settings, palette."""

from __future__ import annotations

import sys
import types

import pytest
from textual.screen import Screen

from slmchat.config import load_settings, settings_path
from slmchat.engine.model.spec import ModelSpec
from slmchat.tui.last_model import remembered
from tests.tui.conftest import SIZE, settle
from tests.tui.fakes import FakeEngine


def notes(app) -> list[str]:
    return [n.message for n in app._notifications]


async def test_theme_is_remembered_in_settings_file(make_app) -> None:
    app = make_app(FakeEngine())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.theme = "nord"
        await pilot.pause()
    settings, problem = load_settings()
    assert problem is None and settings.ui.theme == "nord"
    app2 = make_app(FakeEngine(), settings=settings)
    async with app2.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app2.theme == "nord"


async def test_malformed_settings_file_gives_notice_and_defaults(make_app) -> None:
    settings_path().write_text("[generation\ntemperature = 'hot'\n")
    settings, problem = load_settings()
    assert problem is not None and "malformed" in problem
    app = make_app(FakeEngine(replies=["fine"]), settings=settings, settings_problem=problem)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert any("malformed settings" in n for n in notes(app))
        await pilot.press(*"still works", "enter")
        await settle(pilot)
        assert app.chat.log_view.views()[-1].content == "fine"


async def test_last_loaded_model_is_remembered_by_the_app_only(make_app) -> None:
    """The app opens with its last model next time, but settings.toml [model] (which
    the command line reads too) is not changed; editing [model] later wins."""
    engine = FakeEngine()
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.load_model(ModelSpec(path="/runs/r1/model", dtype="fp32"))
        await settle(pilot)
        assert engine.loads[-1].path == "/runs/r1/model"
    settings, _ = load_settings()
    assert settings.model.path == "default"  # the CLI still uses the default
    spec = remembered(settings, ModelSpec())
    assert spec is not None and (spec.path, spec.dtype) == ("/runs/r1/model", "fp32")
    settings.model.path = "/models/chosen-in-the-file"
    assert remembered(settings, ModelSpec()) is None


async def test_loading_the_configured_model_forgets_the_note(make_app) -> None:
    app = make_app(FakeEngine())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.load_model(ModelSpec(path="/models/other"))
        await settle(pilot)
        assert remembered(app.settings, ModelSpec()) is not None
        app.load_model(ModelSpec(path="default"))
        await settle(pilot)
        assert remembered(app.settings, ModelSpec()) is None


async def test_model_switch_clears_the_last_reply_speed(make_app) -> None:
    app = make_app(FakeEngine(replies=["fast"]))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press(*"hi", "enter")
        await settle(pilot)
        status = str(app.chat.status.render_status())
        assert "TTFT 0.25s" in status and "20.0 tok/s" in status
        app.load_model(ModelSpec(path="/models/other"))
        await settle(pilot)
        status = str(app.chat.status.render_status())
        assert "other" in status and "TTFT" not in status and "tok/s" not in status


async def test_failed_load_keeps_previous_model(make_app) -> None:
    engine = FakeEngine(fail_paths=("/missing",))
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert engine.info is not None and engine.info.name == "fake-model"
        app.load_model(ModelSpec(path="/missing"))
        await settle(pilot)
        assert any("does not exist" in n and "Still using fake-model" in n for n in notes(app))
        assert engine.info.name == "fake-model"
        status = str(app.chat.status.render_status())
        assert "fake-model" in status and "Loading" not in status
        assert app.chat.model_ready


async def test_first_load_failure_keeps_message_pending(make_app) -> None:
    engine = FakeEngine(fail_paths=("default",))
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "no model loaded" in str(app.chat.status.render_status())
        await pilot.press(*"hello", "enter")
        await settle(pilot)
        assert app.chat.pending and engine.calls == []
        app.load_model(ModelSpec(path="/models/other"))
        await settle(pilot)
        assert len(engine.calls) == 1
        assert app.chat.log_view.views()[-1].content == "OK."


class _PickScreen(Screen[ModelSpec | None]):
    def __init__(self, engine: object, settings: object, **_options: object) -> None:
        super().__init__()
        self.engine, self.settings = engine, settings

    def on_mount(self) -> None:
        self.dismiss(ModelSpec(path="/models/picked"))


@pytest.mark.parametrize(("key", "module", "cls"), [
    ("ctrl+o", "slmchat.tui.screens.models", "ModelsScreen"),
    ("ctrl+t", "slmchat.tui.screens.finetune", "FinetuneScreen"),
])
async def test_panel_hooks_load_the_dismissed_spec(make_app, monkeypatch, key, module,
                                                   cls) -> None:
    fake = types.ModuleType(module)
    setattr(fake, cls, _PickScreen)
    monkeypatch.setitem(sys.modules, module, fake)
    engine = FakeEngine()
    app = make_app(engine)
    async with app.run_test(size=(100, 30)) as pilot:  # full width below 110 columns
        await settle(pilot)
        await pilot.press(key)
        await settle(pilot)
        assert engine.loads[-1].path == "/models/picked"
        assert engine.info.name == "picked"


async def test_command_palette_lists_every_chat_action(make_app) -> None:
    app = make_app(FakeEngine(replies=["a", "b"]))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        for needed in ("New chat", "Stop reply", "Regenerate reply", "Continue reply",
                       "Edit last message", "Copy last reply", "Chat settings",
                       "Search conversations", "Rename conversation", "Delete conversation",
                       "Export conversation (Markdown)", "Export conversation (JSON)",
                       "Models", "Fine-tune", "Theme"):
            assert any(t.startswith(needed) for t in titles), needed
        # Running one from the palette works like its key.
        await pilot.press(*"q", "enter")
        await settle(pilot)
        cmd = next(c for c in app.get_system_commands(app.screen)
                   if c.title == "Regenerate reply")
        await cmd.callback()  # type: ignore[misc]
        await settle(pilot)
        assert app.chat.log_view.views()[-1].content == "b"


async def test_command_palette_matches_help_text_too(make_app) -> None:
    from textual.command import CommandPalette
    from textual.widgets import OptionList

    app = make_app(FakeEngine())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"quan")
        options: list[str] = []
        for _ in range(40):  # the palette searches in the background
            await pilot.pause(0.05)
            found = app.screen.query_one(OptionList)
            options = [str(found.get_option_at_index(i).prompt)
                       for i in range(found.option_count)]
            if options:
                break
        assert any(o.startswith("Models") for o in options), options


async def test_notifications_are_plain_text_from_any_widget(make_app) -> None:
    """A tuned model's name "RUN [lora on BASE]" (or an error quoting "[/x]") is shown as
    written: Rich would drop the bracketed part as a tag, or fail on it."""
    app = make_app(FakeEngine())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.chat.notify("loaded 20261129-notes [lora on SmolLM2] and [/x]")
        app.notify("from the app [b]")
        await pilot.pause()
        shown = list(app._notifications)[-2:]
        assert [n.message for n in shown] == [
            "loaded 20261129-notes [lora on SmolLM2] and [/x]", "from the app [b]"]
        assert not any(n.markup for n in shown)


async def test_ctrl_c_names_the_quit_key_in_plain_text_and_the_footer_shows_it(
        make_app) -> None:
    """Issue 26 #12: Ctrl+C showed "Press [b]ctrl+q[/b] to quit" (Textual's markup, shown
    as it is by the app's plain-text notify), and no footer or README named the key."""
    from pathlib import Path

    from textual.widgets._footer import FooterKey

    app = make_app(FakeEngine())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+c")
        await pilot.pause()
        hint = notes(app)[-1]
        assert "Ctrl+Q" in hint and "[" not in hint, hint
        keys = {k.action: k for k in app.screen.query(FooterKey)}
        assert "quit" in keys and keys["quit"].key == "ctrl+q"
        await pilot.press("ctrl+q")  # and it quits
        await pilot.pause()
    assert app.return_code == 0
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert "| Ctrl+Q | quit" in readme
