"""Snapshots of tool calls in the chat: the consent dialog over a reply that called a
tool, and the answered turn with the call's block (collapsed) before the answer.

Update after an intended visual change with ``pytest tests/tui/test_tool_snapshots.py
--snapshot-update`` and look at the report before committing.
"""

from __future__ import annotations

import pytest

from slmchat.engine.mcp.client import McpTool, ToolResult
from slmchat.tui.widgets import status_bar
from tests.tui.conftest import SIZE, settle
from tests.tui.fakes import FakeEngine, FakeHub

ADD = McpTool("math", "add", "Add two integers.",
              {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
               "required": ["a", "b"]})
CALL = '{"name": "add", "arguments": {"a": 2, "b": 3}}'


@pytest.fixture(autouse=True)
def fixed_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    from slmchat.tui.widgets import sidebar

    monkeypatch.setattr(status_bar, "process_rss", lambda: 321 * 2**20)
    monkeypatch.setattr(sidebar, "when", lambda ts, now=None: "Nov 28 14:03")


async def _steady(pilot) -> None:
    await settle(pilot)
    pilot.app.chat.prompt.cursor_blink = False
    pilot.app.clear_notifications()
    await pilot.pause()


def _app(make_app):
    engine = FakeEngine(replies=[CALL, "2 + 3 is **5**."])
    return make_app(engine, tools=FakeHub((ADD,), {"add": ToolResult("5")}))


def test_the_consent_dialog(snap_compare, make_app) -> None:
    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press(*"What is 2 + 3?", "enter")
        await _steady(pilot)

    assert snap_compare(_app(make_app), terminal_size=SIZE, run_before=run_before)


def test_an_answered_call(snap_compare, make_app) -> None:
    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press(*"What is 2 + 3?", "enter")
        await settle(pilot)
        await pilot.click("#once")
        await _steady(pilot)

    assert snap_compare(_app(make_app), terminal_size=SIZE, run_before=run_before)
