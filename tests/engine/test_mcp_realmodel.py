"""End to end on the real default model: it calls the tiny MCP server's ``add`` under the
tool-call constraint, the server answers, and the model goes on reading the result.

With ``choice="auto"`` SmolLM2-135M answers these prompts in text (greedy; checked by
hand), so the call is asked for with the tool named, as an OpenAI client's
``tool_choice`` does; the app's "auto" offers the same constraint and calls the same way.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from slmchat.engine.generation.prompting import ChatMessage
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.generation.toolcalls import call_turns, read_call, with_tools
from slmchat.engine.mcp.client import McpHub
from tests.mcpkit import tiny_spec

pytestmark = pytest.mark.realmodel


def test_the_default_model_calls_add_and_reads_the_result(default_engine, tmp_path: Path) -> None:
    hub = McpHub([tiny_spec(tmp_path, "math")])
    try:
        listing = hub.list_tools()
        add = listing.find("add")
        assert add is not None and not listing.problems
        plan = listing.plan(choice="add")
        assert plan is not None
        messages = with_tools([ChatMessage("user", "What is 2 + 3?")], plan)
        params = SamplingParams(temperature=0.0, max_new_tokens=48)
        text = "".join(c.text for c in default_engine.stream_chat(
            messages, params, constraint=plan.constraint()))
        call = read_call(text, plan)
        assert call is not None, text
        name, arguments = call
        assert name == "add" and set(arguments) == {"a", "b"}
        assert all(isinstance(v, int) for v in arguments.values())
        result = hub.call(add, arguments)
        assert not result.is_error and result.text == str(arguments["a"] + arguments["b"])
        follow = [*messages, *call_turns(name, arguments, result.for_model())]
        answer = "".join(c.text for c in default_engine.stream_chat(
            follow, SamplingParams(temperature=0.0, max_new_tokens=24)))
        assert answer.strip()
    finally:
        hub.close()
