"""Snapshot tests (pytest-textual-snapshot): the main states at 120x36, and every panel
at 80x24, 100x30 and 160x48 (tests/tui/layouts.py builds them).

Update after an intended visual change with ``pytest tests/tui --snapshot-update``
and look at the report before committing.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from slmchat.engine.store.store import Store
from slmchat.tui.widgets import status_bar
from tests.tui.conftest import SIZE, settle
from tests.tui.fakes import FakeEngine
from tests.tui.layouts import DOCKED_SIZES, DOCKED_STATES, SIZES, STATES

CODE_REPLY = (
    "Here is a small function:\n\n```python\ndef add(a: int, b: int) -> int:\n"
    "    return a + b\n```\n\nIt returns the **sum** of `a` and `b`."
)


@pytest.fixture(autouse=True)
def fixed_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """What changes from run to run on screen: memory, free RAM, dates."""
    from dataclasses import replace

    from slmchat.tui.screens import models
    from slmchat.tui.widgets import sidebar

    monkeypatch.setattr(status_bar, "process_rss", lambda: 321 * 2**20)
    monkeypatch.setattr(sidebar, "when", lambda ts, now=None: "Nov 28 14:03")
    real = models.estimate_memory
    monkeypatch.setattr(models, "estimate_memory", lambda *a, **k: replace(
        real(*a, **k), available_bytes=16 * 2**30))


async def _steady(pilot) -> None:
    await settle(pilot)
    pilot.app.chat.prompt.cursor_blink = False
    for area in pilot.app.screen.query("TextArea"):  # the system prompt box too
        area.cursor_blink = False
    for box in pilot.app.screen.query("Input"):  # the sidebar's search field
        box.cursor_blink = False
    pilot.app.clear_notifications()
    await pilot.pause()


def test_answered_chat_with_code_block(snap_compare, make_app) -> None:
    app = make_app(FakeEngine(replies=[CODE_REPLY]))

    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press(*"Write an add function in Python", "enter")
        await _steady(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_loading_model_while_typing(snap_compare, make_app) -> None:
    gate = threading.Event()
    app = make_app(FakeEngine(load_gate=gate))

    async def run_before(pilot) -> None:
        await pilot.pause()
        await pilot.press(*"A question typed before the model is ready", "enter")
        await pilot.pause()
        pilot.app.chat.prompt.cursor_blink = False
        pilot.app.chat.status.refresh_status()
        await pilot.pause()
        # The screenshot is taken right after this returns; let the load finish soon
        # after, so that shutting down does not wait for the blocked loader thread.
        threading.Timer(1.5, gate.set).start()

    try:
        assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
    finally:
        gate.set()


def test_sidebar_search(snap_compare, make_app, db_path: Path) -> None:
    store = Store(db_path)
    for title, text in (("Sourdough starter", "feed the starter with flour and water"),
                        ("Python generators", "a generator yields values lazily"),
                        ("Trip to Lisbon", "the tram 28 goes up the hills")):
        conv = store.create_conversation(title)
        store.add_message(conv.id, "user", text)
    store.close()
    app = make_app(FakeEngine())

    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press("ctrl+f", *"yields")
        await _steady(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_settings_panel_and_stopped_reply(snap_compare, make_app) -> None:
    engine = FakeEngine(replies=["one two three four five"], pause_after=2)

    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press(*"count to five", "enter")
        while not engine.paused.is_set():
            await pilot.pause(0.02)
        await pilot.pause(0.2)
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("ctrl+s")
        await _steady(pilot)

    app = make_app(engine)
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("state", list(STATES))
def test_panels_at_common_sizes(snap_compare, state: str, size: str, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Every panel is usable at 80x24, 100x30 and 160x48: its actions in view, no
    figure cut in half, the footer's keys readable (look at the pictures when they
    change: ``pytest tests/tui/test_snapshots.py --snapshot-update``)."""
    monkeypatch.chdir(tmp_path)
    app, run_before = STATES[state](tmp_path / "conversations.db")
    try:
        assert snap_compare(app, terminal_size=SIZES[size], run_before=run_before)
    finally:
        app.store.close()


@pytest.mark.parametrize("size", list(DOCKED_SIZES))
@pytest.mark.parametrize("panel", list(DOCKED_STATES))
def test_panel_key_docks_beside_the_chat(snap_compare, panel: str, size: str,
                                         tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl+O / Ctrl+T beside a conversation: docked at 160x48 (the chat in view and
    usable), the whole screen at 100x30."""
    monkeypatch.chdir(tmp_path)
    app, run_before = DOCKED_STATES[panel](tmp_path / "conversations.db")
    try:
        assert snap_compare(app, terminal_size=DOCKED_SIZES[size], run_before=run_before)
    finally:
        app.store.close()


def test_quick_model_switcher(snap_compare, db_path: Path) -> None:
    """F12: local models with format, size and runtime; the loaded one marked."""
    from slmchat.config import Settings
    from slmchat.tui.app import SlmChatApp
    from tests.tui.layouts import ENTRIES

    app = SlmChatApp(Settings(), FakeEngine(), Store(db_path), persist_settings=False,
                     discover_fn=lambda: list(ENTRIES))

    async def run_before(pilot) -> None:
        await settle(pilot)
        app.chat.prompt.cursor_blink = False
        app.clear_notifications()  # before the modal: the chat's toasts show beneath it
        await pilot.pause()
        await pilot.press("f12")
        await settle(pilot)
        for box in app.screen.query("Input"):
            box.cursor_blink = False
        await pilot.pause()

    try:
        assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
    finally:
        app.store.close()
