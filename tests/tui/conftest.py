"""Helpers for Pilot tests: a store in tmp_path and an app on a FakeEngine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from slmchat.config import Settings
from slmchat.engine.store.store import Store
from slmchat.tui.app import SlmChatApp
from tests.tui.fakes import FakeEngine

SIZE = (120, 36)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "conversations.db"


@pytest.fixture
def make_app(db_path: Path) -> Callable[..., SlmChatApp]:
    stores: list[Store] = []

    def make(engine: FakeEngine | None = None, settings: Settings | None = None,
             **kwargs: Any) -> SlmChatApp:
        store = Store(db_path)
        stores.append(store)
        app = SlmChatApp(settings or Settings(), engine or FakeEngine(), store, **kwargs)
        return app

    yield make
    for store in stores:
        store.close()


async def settle(pilot: Any) -> None:
    """Wait for every worker and the messages they posted."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.1)


async def send(pilot: Any, text: str, *, paste: bool = False, click: bool = False) -> None:
    """Send ``text`` from the chat's prompt as a user would, and wait for the reply.

    Typed key by key, or with ``paste`` put in at once (paths and text that keys would
    not spell); with ``click`` the prompt is clicked first (a panel docked beside it
    has the focus) and must have taken the focus."""
    app = pilot.app
    if click:
        await pilot.click("#prompt")
        assert app.focused is app.chat.prompt
    if paste:
        app.chat.prompt.set_text(text)
        await pilot.press("enter")
    else:
        await pilot.press(*text, "enter")
    await settle(pilot)
