"""The chat screen as one coordinator (issue 25): no mixins, each handler runs once per
message, and what the screen asks of the app or of a panel goes as a message."""

from __future__ import annotations

import inspect
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from textual.widgets import Button, Input

import slmchat.tui
from slmchat.engine.model.spec import ModelSpec
from slmchat.tui.screens.chat import ChatScreen
from slmchat.tui.screens.finetune import FinetunePanel, FinetuneScreen
from tests.tui.conftest import send, settle
from tests.tui.fakes import FakeEngine

WIDE = (160, 48)
NARROW = (100, 30)
HANDLERS = ("on_mount", "on_resize", "on_offer_bar_chosen")


def test_the_chat_screen_is_one_class() -> None:
    ours = [c.__qualname__ for c in ChatScreen.__mro__ if c.__module__.startswith("slmchat")]
    assert ours == ["ChatScreen"]


def test_the_app_is_asked_by_messages_not_by_reaching_into_it() -> None:
    """No ``getattr(self.app, ...)`` or ``getattr(self.screen, ...)`` duck typing in the
    app's code, nor on an app handed to a function (``getattr(app, ...)``): a screen or
    widget posts a message (tui/messages.py)."""
    root = Path(slmchat.tui.__file__).parent
    found = [f"{p.relative_to(root)}: {m.group(0)}" for p in sorted(root.rglob("*.py"))
             for m in re.finditer(r"getattr\((self\.)?(app|screen)\b[^)]*\)", p.read_text())]
    assert found == []


def count_runs(monkeypatch: Any) -> dict[str, list[Any]]:
    """Wrap every definition of HANDLERS in the chat screen's classes: the messages each
    name was called with, once per call (Textual calls one per class that defines it)."""
    runs: dict[str, list[Any]] = defaultdict(list)
    for cls in ChatScreen.__mro__:
        if not cls.__module__.startswith("slmchat"):
            continue
        for name in HANDLERS:
            fn = cls.__dict__.get(name)
            if fn is None:
                continue
            takes_event = len(inspect.signature(fn).parameters) == 2

            async def wrapper(self: Any, event: Any, fn: Any = fn, name: str = name,
                              takes_event: bool = takes_event) -> None:
                runs[name].append(event)
                result = fn(self, event) if takes_event else fn(self)
                if inspect.isawaitable(result):
                    await result

            monkeypatch.setattr(cls, name, wrapper)
    return runs


def once_each(events: list[Any]) -> bool:
    return len({id(e) for e in events}) == len(events)


async def test_each_handler_runs_once_per_message(make_app, monkeypatch) -> None:
    runs = count_runs(monkeypatch)
    engine = FakeEngine()
    app = make_app(engine)
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        assert len(runs["on_mount"]) == 1
        await pilot.resize_terminal(130, 40)
        await settle(pilot)
        assert runs["on_resize"] and once_each(runs["on_resize"])
        offers = app.chat.offers
        await offers.offer("switch-back", "this chat last used another model",
                           [("Switch back", "switch")], ModelSpec(path="/models/other"))
        offers.query(Button).first().press()
        await settle(pilot)
        assert len(runs["on_offer_bar_chosen"]) == 1
        assert engine.loads[-1] == ModelSpec(path="/models/other")  # asked of the app
        assert app.focused is app.chat.prompt
        # Dismiss is an answer too: the focus goes back to the prompt, nothing loads.
        loads = len(engine.loads)
        await offers.offer("switch-back", "again", [("Switch back", "switch")],
                           ModelSpec(path="/models/third"))
        offers.query(Button).last().press()
        await settle(pilot)
        assert len(runs["on_offer_bar_chosen"]) == 2 and once_each(runs["on_offer_bar_chosen"])
        assert len(engine.loads) == loads and not offers.display
        assert app.focused is app.chat.prompt


async def mark_a_reply(pilot: Any) -> None:
    await send(pilot, "Capital of France?")
    await pilot.press("ctrl+l", "plus")
    await settle(pilot)


def exported(tmp_path: Path) -> str:
    (path,) = (tmp_path / "slmchat-home" / "data" / "exports").glob("chats-*.jsonl")
    return str(path)


async def test_finetune_marked_opens_the_docked_panel_on_the_exported_file(
        make_app, tmp_path: Path) -> None:
    """Formerly a fill of another screen's ``#ft-file`` under ``suppress(Exception)``:
    now a PanelRequested the app answers with the panel, the file in it."""
    app = make_app(FakeEngine(replies=["Paris."]))
    app.chat.runs_root = tmp_path / "runs"
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        await mark_a_reply(pilot)
        await app.chat.run_action("finetune_marked")
        await settle(pilot)
        assert app.screen is app.chat and app.chat.side.kind == "finetune"
        field = app.chat.side.query_one(FinetunePanel).query_one("#ft-file", Input)
        assert field.value == exported(tmp_path) and app.focused is field
        # Exported again with the panel open: the panel takes the new file.
        field.value = ""
        await app.chat.action_finetune_marked()
        await settle(pilot)
        assert app.chat.side.kind == "finetune" and field.value.endswith(".jsonl")


async def test_finetune_marked_on_a_narrow_terminal_opens_the_panel_screen(
        make_app, tmp_path: Path) -> None:
    app = make_app(FakeEngine(replies=["Paris."]))
    app.chat.runs_root = tmp_path / "runs"
    async with app.run_test(size=NARROW) as pilot:
        await settle(pilot)
        await mark_a_reply(pilot)
        await app.chat.action_finetune_marked()
        await settle(pilot)
        assert isinstance(app.screen, FinetuneScreen)
        assert app.screen.query_one("#ft-file", Input).value == exported(tmp_path)
