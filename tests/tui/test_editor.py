"""Ctrl+E opens the prompt in $EDITOR and puts the saved text back."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from slmchat.tui.screens import editor
from tests.tui.conftest import SIZE, settle
from tests.tui.fakes import FakeEngine


async def test_ctrl_e_round_trips_the_prompt_through_the_editor(
        make_app, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[list[str], str, int]] = []

    def fake_editor(argv: list[str]) -> int:
        path = Path(argv[-1])
        seen.append((argv[:-1], path.read_text(), path.stat().st_mode & 0o777))
        path.write_text("a long prompt\nwith two lines\n")
        return 0

    monkeypatch.setenv("EDITOR", "myeditor --wait")
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setattr(editor.subprocess, "call", fake_editor)
    app = make_app(FakeEngine())
    monkeypatch.setattr(app, "suspend", contextlib.nullcontext)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press(*"draft", "ctrl+e")
        await pilot.pause()
        assert seen == [(["myeditor", "--wait"], "draft", 0o600)]
        assert app.chat.prompt.text == "a long prompt\nwith two lines"
        assert app.chat.prompt.has_focus
        assert not list(Path(editor.tempfile.gettempdir()).glob("slmchat-prompt-*"))


async def test_editor_failures_keep_the_prompt(make_app, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDITOR", "no-such-editor-xyz")
    app = make_app(FakeEngine())
    monkeypatch.setattr(app, "suspend", contextlib.nullcontext)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press(*"keep me", "ctrl+e")
        await pilot.pause()
        assert app.chat.prompt.text == "keep me"
        assert any("not found" in n.message for n in app._notifications)
        monkeypatch.setattr(editor.subprocess, "call", lambda argv: 1)
        await pilot.press("ctrl+e")
        await pilot.pause()
        assert app.chat.prompt.text == "keep me"
        assert any("exited with status 1" in n.message for n in app._notifications)
