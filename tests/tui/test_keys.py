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


def test_every_default_key_is_a_key_and_typos_are_not() -> None:
    from slmchat.tui.keys import key_problem

    for binding in binding_ids(SlmChatApp.BINDINGS).values():
        assert key_problem(binding.key) is None, binding.key
    for good in ("f6", "ctrl+k", "ctrl+k,ctrl+l", "alt+full_stop", "?", "shift+pageup"):
        assert key_problem(good) is None, good
    assert key_problem("") == "no key given" and key_problem(" , ") == "no key given"
    for bad in ("ctrl+n,", "ctlr+n", "ctrl+", "fsix", "ctrl+shift+nokey"):
        assert key_problem(bad) is not None, bad
    assert len(key_problem("x" * 1_000_000) or "") < 80  # a huge value is not echoed


async def test_keys_that_cannot_work_and_unknown_themes_warn_and_keep_defaults(
        make_app) -> None:
    settings = Settings()
    settings.ui.keys = {"chat.new": ",", "chat.regenerate": "ctlr+r", "chat.compare": "f6"}
    settings.ui.theme = "no-such-theme"
    app = make_app(FakeEngine(replies=["one", "two"]), settings=settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        shown = [n.message for n in app._notifications]
        bad = [m for m in shown if "cannot work" in m]
        assert len(bad) == 1 and "chat.new: no key given" in bad[0], shown
        assert "chat.regenerate: 'ctlr+r' is not a key" in bad[0]
        assert any("Unknown theme 'no-such-theme'" in m and "textual-dark" in m
                   for m in shown), shown
        assert app.theme == "textual-dark"
        await pilot.press(*"hi", "enter")
        await settle(pilot)
        await pilot.press("ctrl+r")  # the default key still regenerates
        await settle(pilot)
        assert len(app.engine.calls) == 2
        conv = app.chat.conv
        await pilot.press("ctrl+n")  # and Ctrl+N still starts a new chat
        await settle(pilot)
        assert conv is not None and app.chat.conv is None
