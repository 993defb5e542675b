"""Tool calls for the OpenAI and Ollama APIs: the functions a request offers, the text
that tells the model about them, the constraint that makes its call well formed, and
reading the call back out of the reply.

Small models fail at tool protocols on their own (oterm#214), so the call is decoded
under a constraint: with ``tool_choice`` "required" or a named function the reply is a
JSON object ``{"name": ..., "arguments": {...}}`` whose arguments follow that function's
parameter schema; with "auto" the reply is either such a call or plain text that does
not start with "{". The functions are listed in a system message (the default model's
chat template has no tools section), and earlier calls and ``tool`` results go back into
the conversation as text the model can read.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from slmchat.engine.generation.constraints import JSON_OPTIONS, Constraint
from slmchat.errors import InvalidParameterError
from slmchat.server.errors import APIError

MAX_TOOLS = 64


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
        schema = json.dumps(self._call_schema())
        if self.choice == "auto":
            grammar = f"start: call | answer\ncall: %json {schema}\nanswer: /[^{{ \\n][^\\x00]*/\n"
            constraint = Constraint("lark", grammar)
        else:
            constraint = Constraint("json_schema", schema)
        try:
            constraint.check()
        except InvalidParameterError as exc:
            raise APIError(400, f"tools: a parameters schema does not compile: {exc}",
                           param="tools") from exc
        return constraint


def parse_tools(tools: Any, choice: Any) -> ToolPlan | None:
    """The request's tools and tool_choice (OpenAI's shape; Ollama sends the same list).
    None when there are none or tool_choice is "none"."""
    if tools in (None, []):
        if choice not in (None, "none", "auto"):
            raise APIError(400, "tool_choice needs tools", param="tool_choice")
        return None
    if not isinstance(tools, list) or len(tools) > MAX_TOOLS:
        raise APIError(400, f"tools must be a list of at most {MAX_TOOLS} functions", param="tools")
    parsed: list[Tool] = []
    for i, item in enumerate(tools):
        fn = item.get("function") if isinstance(item, dict) else None
        if not isinstance(item, dict) or item.get("type", "function") != "function" \
                or not isinstance(fn, dict):
            raise APIError(400, f"tools[{i}] must be {{\"type\": \"function\", \"function\": {{...}}}}",
                           param=f"tools[{i}]")
        name, params = fn.get("name"), fn.get("parameters") or {"type": "object"}
        if not isinstance(name, str) or not name or len(name) > 64:
            raise APIError(400, f"tools[{i}].function.name must be a name of 1-64 characters",
                           param=f"tools[{i}].function.name")
        if not isinstance(params, dict):
            raise APIError(400, f"tools[{i}].function.parameters must be a JSON schema object",
                           param=f"tools[{i}].function.parameters")
        parsed.append(Tool(name, str(fn.get("description") or ""), params))
    names = [t.name for t in parsed]
    if choice in (None, "auto"):
        mode = "auto"
    elif choice == "none":
        return None
    elif choice == "required":
        mode = "required"
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        mode = str(choice["function"].get("name"))
        if mode not in names:
            raise APIError(400, f"tool_choice names {mode!r}, which is not among the tools",
                           param="tool_choice")
    else:
        raise APIError(400, 'tool_choice must be "none", "auto", "required" or '
                       '{"type": "function", "function": {"name": ...}}', param="tool_choice")
    return ToolPlan(tuple(parsed), mode)


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
    """An earlier call, as the model writes one (for assistant messages with tool_calls)."""
    if isinstance(arguments, str):
        with contextlib.suppress(ValueError):
            arguments = json.loads(arguments)
    return json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
