"""Tool calls for the OpenAI and Ollama APIs: the functions a request offers, parsed and
checked into the engine's ``ToolPlan`` (engine/generation/toolcalls.py: the system text,
the constraint that makes the call well formed, reading the call back), with every bad
field a 400 naming it.
"""

from __future__ import annotations

from typing import Any

from slmchat.engine.generation.toolcalls import Tool, ToolPlan, call_id, call_text, read_call
from slmchat.errors import InvalidParameterError
from slmchat.server.errors import APIError

__all__ = ["MAX_TOOLS", "Tool", "ToolPlan", "call_id", "call_text", "checked_constraint",
           "parse_tools", "read_call"]

MAX_TOOLS = 64


def checked_constraint(plan: ToolPlan) -> Any:
    """The plan's constraint; a 400 naming ``tools`` when a parameters schema does not
    compile."""
    try:
        return plan.constraint()
    except InvalidParameterError as exc:
        raise APIError(400, f"tools: a parameters schema does not compile: {exc}",
                       param="tools") from exc


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
