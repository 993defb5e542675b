"""Tool calls: the functions offered to a model, the text that tells it about them, the
constraint that makes its call well formed, and reading the call back out of the reply.

Shared by the server (OpenAI / Ollama ``tools``, server/tools.py) and the app (tools of
the user's MCP servers). Small models fail at tool protocols on their own (oterm#214), so
the call is decoded under a constraint: with choice "required" or a named function the
reply is a JSON object ``{"name": ..., "arguments": {...}}`` whose arguments follow that
function's parameter schema; with "auto" the reply is either such a call or plain text
that does not start with "{". The functions are listed in a system message (the default
model's chat template has no tools section), and earlier calls and their results go back
into the conversation as text the model can read.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slmchat.engine.generation.constraints import JSON_OPTIONS, Constraint
from slmchat.engine.generation.prompting import ChatMessage


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolPlan:
    tools: tuple[Tool, ...]
    choice: str  # "auto", "required", or the name of the one function to call

    def system_text(self) -> str:
        lines = ["You can call these functions. To call one, reply with only a JSON object "
                 '{"name": FUNCTION, "arguments": {...}}; otherwise answer in plain text.']
        for tool in self.tools:
            lines.append(json.dumps({"name": tool.name, "description": tool.description,
                                     "parameters": tool.parameters}, ensure_ascii=False))
        return "\n".join(lines)

    def _call_schema(self) -> dict[str, Any]:
        offered = [t for t in self.tools if self.choice in ("auto", "required", t.name)]
        calls = [{"type": "object", "additionalProperties": False, "required": ["name", "arguments"],
                  "properties": {"name": {"const": t.name},
                                 "arguments": t.parameters or {"type": "object"}}}
                 for t in offered]
        schema: dict[str, Any] = calls[0] if len(calls) == 1 else {"anyOf": calls}
        return {**schema, "x-guidance": JSON_OPTIONS}

    def constraint(self) -> Constraint:
        """The reply's constraint, checked: InvalidParameterError (one line) when a
        parameters schema does not compile."""
        schema = json.dumps(self._call_schema())
        if self.choice == "auto":
            grammar = f"start: call | answer\ncall: %json {schema}\nanswer: /[^{{ \\n][^\\x00]*/\n"
            constraint = Constraint("lark", grammar)
        else:
            constraint = Constraint("json_schema", schema)
        constraint.check()
        return constraint


def with_tools(messages: Sequence[ChatMessage], plan: ToolPlan) -> list[ChatMessage]:
    """``messages`` with the offered functions described in the system message."""
    if messages and messages[0].role == "system":
        return [ChatMessage("system", f"{messages[0].content}\n\n{plan.system_text()}"),
                *messages[1:]]
    return [ChatMessage("system", plan.system_text()), *messages]


def read_call(text: str, plan: ToolPlan) -> tuple[str, dict[str, Any]] | None:
    """(name, arguments) when the reply is a call of an offered function."""
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None
    try:
        data = json.loads(stripped)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("arguments"), dict):
        return None
    name = data.get("name")
    if name not in {t.name for t in plan.tools}:
        return None
    return str(name), dict(data["arguments"])


def call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def call_text(name: str, arguments: Any) -> str:
    """An earlier call, as the model writes one (for assistant messages with calls)."""
    if isinstance(arguments, str):
        with contextlib.suppress(ValueError):
            arguments = json.loads(arguments)
    return json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)


def result_text(name: str, text: str) -> str:
    """A function's result, as the next (user) turn the model reads."""
    return f"Result of {name}: {text}"


MAX_RESULT_CHARS = 8_000  # what the model reads of one result (the store keeps it all)


def result_for_model(text: str, is_error: bool = False) -> str:
    """A tool's result as the model reads it: cut at MAX_RESULT_CHARS, errors marked."""
    if len(text) > MAX_RESULT_CHARS:
        text = text[:MAX_RESULT_CHARS] + f"\n[... {len(text) - MAX_RESULT_CHARS} more characters]"
    return f"error: {text}" if is_error else text


def call_turns(name: str, arguments: Any, result: str) -> list[ChatMessage]:
    """A call that ran and its result, as the model reads them in the conversation."""
    return [ChatMessage("assistant", call_text(name, arguments)),
            ChatMessage("user", result_text(name, result))]


def stored_call_turns(call: dict[str, Any]) -> list[ChatMessage]:
    """A tool call kept with a reply in the store (its ``tool_call``), as the model reads
    it: the call and its result. A call that was denied or never ran is left out: the
    model never saw it happen."""
    if "result" not in call:
        return []
    result = result_for_model(str(call["result"]), bool(call.get("is_error")))
    return call_turns(str(call.get("name")), call.get("arguments") or {}, result)
