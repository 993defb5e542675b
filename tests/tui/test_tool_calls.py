"""Tool calls in the chat (screens/tool_calls.py) on a scripted engine and a fake MCP hub:
the model is offered the tools under the call-or-text constraint, a call waits for the
user (allow once / always / deny), a denied call runs nothing, and the call, its result
and the model's answer after it are stored and shown."""

from __future__ import annotations

import json
from typing import Any

import psutil

from slmchat.config import Settings
from slmchat.engine.generation.prompting import ChatMessage
from slmchat.engine.mcp.client import McpError, McpHub, McpTool, ToolResult
from slmchat.tui.screens.dialogs import ToolConsent
from slmchat.tui.screens.tool_calls import MAX_CHAIN
from slmchat.tui.widgets.tool_call import ToolCallBlock
from tests.tui.conftest import SIZE, settle
from tests.tui.fakes import FakeEngine, FakeHub

ADD = McpTool("math", "add", "Add two integers.",
              {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
               "required": ["a", "b"]})
CALL = '{"name": "add", "arguments": {"a": 2, "b": 3}}'


def stored(app: Any) -> list[Any]:
    assert app.chat.conv is not None
    return app.store.messages(app.chat.conv.id)


async def ask(pilot: Any, text: str) -> None:
    await pilot.app.chat.submit(text)
    await settle(pilot)


async def answer(pilot: Any, button: str) -> None:
    assert isinstance(pilot.app.screen, ToolConsent), "the consent dialog is not shown"
    await pilot.click(f"#{button}")
    await settle(pilot)


async def test_allow_once_runs_the_call_and_the_model_answers_with_the_result(make_app) -> None:
    engine = FakeEngine(replies=[CALL, "The sum is 5."])
    hub = FakeHub((ADD,), {"add": ToolResult("5")})
    app = make_app(engine, tools=hub)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await ask(pilot, "What is 2 + 3?")
        assert hub.calls == []  # nothing runs before the user answers
        dialog = app.screen
        assert isinstance(dialog, ToolConsent)
        shown = str(dialog.query_one("#tool-args").render())
        assert '"a": 2' in shown and '"b": 3' in shown
        await answer(pilot, "once")
        assert hub.calls == [("add", {"a": 2, "b": 3})]
        # The first reply was offered the tool, under the call-or-text constraint.
        first = engine.calls[0]
        assert first.constraint is not None and first.constraint.kind == "lark"
        assert first.messages[0].role == "system" and '"name": "add"' in first.messages[0].content
        # The model went on, reading its call and the result.
        second = engine.calls[1].messages
        assert json.loads(second[-2].content) == {"name": "add", "arguments": {"a": 2, "b": 3}}
        assert second[-1] == ChatMessage("user", "Result of add: 5")
        msgs = stored(app)
        assert [(m.role, m.content) for m in msgs] == [
            ("user", "What is 2 + 3?"), ("assistant", ""), ("assistant", "The sum is 5.")]
        call = msgs[1].tool_call
        assert call is not None
        assert (call["server"], call["name"], call["arguments"]) == ("math", "add", {"a": 2, "b": 3})
        assert (call["consent"], call["result"], call["is_error"]) == ("once", "5", False)
        assert msgs[1].provenance["tools"] == {"offered": ["math.add"], "called": "math.add"}
        assert msgs[2].provenance["tools"] == {"offered": ["math.add"], "called": None}
        block = app.chat.log_view.views()[1].query_one(ToolCallBlock)
        assert block.collapsed and "add" in block.title and "result: 5" in block.title
        assert not app.chat.generating
        # Reopened from the store, the call is a block again (no raw JSON as text).
        await app.chat.action_new_chat()
        await app.chat.open_conversation(msgs[0].conversation_id)
        await settle(pilot)
        views = app.chat.log_view.views()
        assert [v.content for v in views] == ["What is 2 + 3?", "", "The sum is 5."]
        again = views[1].query_one(ToolCallBlock)
        assert again.title == block.title
        again.collapsed = False
        await settle(pilot)
        assert "Result:\n5" in str(again.query_one(".tool-result").render())


async def test_deny_runs_nothing_and_ends_the_turn(make_app) -> None:
    engine = FakeEngine(replies=[CALL, "not used"])
    hub = FakeHub((ADD,))
    app = make_app(engine, tools=hub)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await ask(pilot, "What is 2 + 3?")
        await answer(pilot, "deny")
        assert hub.calls == []
        assert len(engine.calls) == 1  # no reply after a denied call
        msgs = stored(app)
        assert len(msgs) == 2 and msgs[1].tool_call is not None
        assert msgs[1].tool_call["consent"] == "denied" and "result" not in msgs[1].tool_call
        block = app.chat.log_view.views()[1].query_one(ToolCallBlock)
        assert "denied" in block.title
        assert not app.chat.generating
        # The model never saw the denied call: the next turn's prompt leaves it out.
        engine.replies.append("Fine.")
        await ask(pilot, "Never mind.")
        assert [(m.role, m.content) for m in engine.calls[1].messages[1:]] == [
            ("user", "What is 2 + 3?"), ("user", "Never mind.")]


async def test_escape_and_a_stray_enter_deny(make_app) -> None:
    engine = FakeEngine(replies=[CALL, CALL])
    hub = FakeHub((ADD,))
    app = make_app(engine, tools=hub)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await ask(pilot, "What is 2 + 3?")
        assert isinstance(app.screen, ToolConsent)
        await pilot.press("enter")  # the focus is on Deny: a stray Enter runs nothing
        await settle(pilot)
        assert not isinstance(app.screen, ToolConsent)
        await ask(pilot, "And 4 + 5?")
        assert isinstance(app.screen, ToolConsent)
        await pilot.press("escape")
        await settle(pilot)
        assert hub.calls == []
        assert [m.tool_call["consent"] for m in stored(app) if m.tool_call] == ["denied", "denied"]
    assert hub.closed  # the app closes the tools on exit


async def test_always_allow_asks_once_per_tool(make_app) -> None:
    engine = FakeEngine(replies=[CALL, "5.", CALL, "5 again."])
    hub = FakeHub((ADD,), {"add": ToolResult("5")})
    app = make_app(engine, tools=hub)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await ask(pilot, "What is 2 + 3?")
        await answer(pilot, "always")
        await ask(pilot, "And again?")
        assert not isinstance(app.screen, ToolConsent)  # not asked the second time
        assert len(hub.calls) == 2
        assert [m.content for m in stored(app) if m.role == "assistant"] == ["", "5.", "", "5 again."]
        assert stored(app)[4].tool_call["consent"] == "always"


async def test_a_failing_server_is_the_result_the_model_reads(make_app) -> None:
    engine = FakeEngine(replies=[CALL, "Sorry, the calculator is down."])
    hub = FakeHub((ADD,), {"add": McpError("MCP server 'math' stopped during add")})
    app = make_app(engine, tools=hub)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await ask(pilot, "What is 2 + 3?")
        await answer(pilot, "once")
        call = stored(app)[1].tool_call
        assert call["is_error"] and call["result"] == "MCP server 'math' stopped during add"
        assert engine.calls[1].messages[-1].content == \
            "Result of add: error: MCP server 'math' stopped during add"
        assert "error" in app.chat.log_view.views()[1].query_one(ToolCallBlock).title


async def test_a_turn_makes_at_most_max_chain_calls(make_app) -> None:
    engine = FakeEngine(replies=[CALL] * (MAX_CHAIN + 1))
    hub = FakeHub((ADD,), {"add": ToolResult("5")})
    app = make_app(engine, tools=hub)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await ask(pilot, "Keep adding")
        await answer(pilot, "always")
        await settle(pilot)
        assert len(hub.calls) == MAX_CHAIN
        assert [c.constraint is not None for c in engine.calls] == [True] * MAX_CHAIN + [False]
        assert stored(app)[-1].tool_call is None  # the last reply is plain text


async def test_tools_can_be_turned_off_for_a_conversation(make_app) -> None:
    engine = FakeEngine(replies=["Hi.", CALL])
    hub = FakeHub((ADD,))
    app = make_app(engine, tools=hub)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await ask(pilot, "hello")
        app.chat.action_toggle_tools()
        assert app.store.get_conversation(app.chat.conv.id).settings["tools_off"] is True
        await ask(pilot, "What is 2 + 3?")
        assert engine.calls[1].constraint is None
        assert all("add" not in m.content for m in engine.calls[1].messages if m.role == "system")
        assert stored(app)[-1].tool_call is None and hub.calls == []


async def test_problems_listing_the_tools_are_shown_once(make_app) -> None:
    engine = FakeEngine(replies=["a", "b"])
    hub = FakeHub((ADD,), problems=("MCP server 'web' could not start: [Errno 2] nope",))
    app = make_app(engine, tools=hub)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await ask(pilot, "one")
        await ask(pilot, "two")
        shown = [n.message for n in app._notifications if "could not start" in n.message]
        assert shown == ["MCP server 'web' could not start: [Errno 2] nope"]


async def test_no_mcp_configured_offers_no_tools_and_starts_nothing(make_app) -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    engine = FakeEngine(replies=[CALL])
    app = make_app(engine, settings=Settings())
    assert isinstance(app.tools, McpHub) and app.tools.specs == ()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await ask(pilot, "What is 2 + 3?")
        assert engine.calls[0].constraint is None
        assert engine.calls[0].messages == [ChatMessage("user", "What is 2 + 3?")]
        assert stored(app)[-1].tool_call is None  # the same text is only text
        assert not app.tools.started
        assert {p.pid for p in psutil.Process().children(recursive=True)} == before


async def test_a_real_stdio_server_runs_the_allowed_call(make_app, tmp_path) -> None:
    """The app with the engine's MCP client and the tests' tiny server (no fake hub)."""
    from tests.mcpkit import tiny_spec

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    hub = McpHub([tiny_spec(tmp_path, "math")])
    engine = FakeEngine(replies=[CALL, "The sum is 5."])
    app = make_app(engine, tools=hub)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await ask(pilot, "What is 2 + 3?")
        assert '"name": "add"' in engine.calls[0].messages[0].content  # listed from the server
        await answer(pilot, "once")
        call = stored(app)[1].tool_call
        assert (call["result"], call["is_error"]) == ("5", False)
        assert engine.calls[1].messages[-1].content == "Result of add: 5"
    assert not hub.started  # the app closed it on exit
    assert {p.pid for p in psutil.Process().children(recursive=True)} == before


async def test_arguments_that_look_like_markup_are_shown_as_they_are(make_app) -> None:
    note = McpTool("notes", "read", "Read a note.", {"type": "object", "properties": {
        "path": {"type": "string"}}, "required": ["path"]})
    tricky = '{"name": "read", "arguments": {"path": "[/notes] [bold]x[/bold]"}}'
    engine = FakeEngine(replies=[tricky])
    app = make_app(engine, tools=FakeHub((note,)))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await ask(pilot, "Read it")
        await answer(pilot, "deny")
        block = app.chat.log_view.views()[1].query_one(ToolCallBlock)
        shown = block.query_one("CollapsibleTitle").render()
        assert "[/notes] [bold]x[/bold]" in str(shown)
