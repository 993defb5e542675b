"""Tool calls: what a request offers, the constraint, reading the call back (no model)."""

from __future__ import annotations

import json

import pytest

from slmchat.server.errors import APIError
from slmchat.server.tools import checked_constraint, parse_tools, read_call

FN = {"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}}


def test_choices_and_their_constraints() -> None:
    assert parse_tools(None, None) is None and parse_tools([FN], "none") is None
    auto = parse_tools([FN], None)
    assert auto is not None and auto.choice == "auto" and auto.constraint().kind == "lark"
    required = parse_tools([FN], "required")
    assert required is not None and required.constraint().kind == "json_schema"
    named = parse_tools([FN], {"type": "function", "function": {"name": "add"}})
    assert named is not None and named.choice == "add"
    assert '"name": "add"' in named.system_text()


@pytest.mark.parametrize(("tools", "choice"), [
    ([FN], {"type": "function", "function": {"name": "sub"}}), ([FN], "sometimes"),
    ("add", None), ([{"type": "retrieval"}], None), ([{"function": {"name": ""}}], None),
    ([{"function": {"name": "x", "parameters": "object"}}], None), (None, "required"),
    ([FN] * 65, None),
    ([{"function": {"name": "bad", "parameters": {"type": "object", "properties": 5}}}], "required"),
])
def test_bad_tools_are_a_400(tools, choice) -> None:
    with pytest.raises(APIError) as err:
        plan = parse_tools(tools, choice)
        assert plan is not None
        checked_constraint(plan)
    assert err.value.status == 400


def test_read_call_takes_only_offered_functions() -> None:
    plan = parse_tools([FN], "auto")
    assert plan is not None
    assert read_call(json.dumps({"name": "add", "arguments": {"a": 1}}), plan) == ("add", {"a": 1})
    assert read_call('{"name": "sub", "arguments": {}}', plan) is None
    assert read_call("The answer is 2.", plan) is None
    assert read_call('{"name": "add", "arguments": [1]}', plan) is None
    assert read_call("{" * 5000, plan) is None
