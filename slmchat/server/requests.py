"""One neutral generation request: typed readers for JSON request fields, and its plan.

Both protocols are parsed into a ``GenRequest``; sampling values are checked by
``SamplingParams.validate`` (the one copy of the ranges), and every bad field becomes a
400 that names the field. ``plan`` then fits it to the loaded model: the prompt within
the context budget and the reply's length (``Planned``), a 400 when it cannot fit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from slmchat.engine.generation.constraints import Constraint
from slmchat.engine.generation.prompting import ChatMessage, Prompt, PromptMode
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.generation.toolcalls import ToolPlan, call_text, result_text
from slmchat.engine.session import EngineLike
from slmchat.errors import InvalidParameterError
from slmchat.server.errors import APIError


@dataclass(frozen=True)
class GenRequest:
    """What to generate, whatever protocol asked for it."""

    messages: list[ChatMessage]
    mode: PromptMode = "chat"
    model: str | None = None
    stream: bool = False
    max_tokens: int | None = None  # None: as many as the context leaves, up to the default
    overrides: dict[str, Any] = field(default_factory=dict)  # SamplingParams fields
    strict_context: bool = False  # raw completions: a prompt that does not fit is a 400
    include_usage: bool = False  # OpenAI stream_options.include_usage
    echo: bool = False  # OpenAI completions: the prompt comes first in the text
    constraint: Constraint | None = None  # response_format / format: the reply follows it
    tools: ToolPlan | None = None  # offered functions: a reply may be a call (server/tools.py)
    cache_prompt: bool = True  # False: no KV reuse, the reply is what a fresh prefill gives
    # enable_thinking for a template with that switch (None: the template's default);
    # OpenAI chat_template_kwargs / reasoning_effort, Ollama think
    thinking: bool | None = None
    # OpenAI's Predicted Outputs: the client's guess of the reply, the speculative draft
    prediction: str | None = None

    def sampling(self, defaults: SamplingParams) -> SamplingParams:
        """Defaults with this request's values; out-of-range values are a 400."""
        params = replace(defaults, **self.overrides)
        if self.max_tokens is not None:
            params = replace(params, max_new_tokens=self.max_tokens)
        try:
            return params.validate()
        except InvalidParameterError as exc:
            raise APIError(400, str(exc), param=_param_of(str(exc))) from exc


def constraint_of(param: str, schema: Any = None) -> Constraint:
    """A checked constraint for ``response_format`` / ``format``; a 400 naming ``param``
    when it does not compile."""
    import json

    from slmchat.engine.generation.constraints import Constraint

    if schema is None:
        constraint = Constraint("json")
    else:
        try:
            text = json.dumps(schema)
        except (TypeError, ValueError, RecursionError) as exc:
            raise APIError(400, f"{param}: the schema is not JSON ({exc})", param=param) from exc
        constraint = Constraint("json_schema", text)
    try:
        constraint.check()
    except InvalidParameterError as exc:
        raise APIError(400, f"{param}: {exc}", param=param) from exc
    return constraint


def _param_of(message: str) -> str | None:
    name = message.split(" ", 1)[0]
    return {"max_new_tokens": "max_tokens"}.get(name, name) if name.isidentifier() else None


def lone_surrogate_at(data: Any) -> str | None:
    """Where a string in parsed JSON holds a lone UTF-16 surrogate (JSON allows the escape
    "\\ud800"; no tokenizer or database takes the result), as a field path such as
    ``messages[0].content`` ("" for the top level); None when all text is valid.

    Depth-first with a stack of iterators: memory grows with the nesting, not the size."""
    if isinstance(data, str):
        return None if _valid_text(data) else ""
    stack: list[tuple[str, Iterator[tuple[str, Any]]]] = []

    def enter(where: str, value: Any) -> None:
        if isinstance(value, dict):
            stack.append((where, iter(value.items())))
        elif isinstance(value, list):
            stack.append((where, ((f"[{i}]", item) for i, item in enumerate(value))))

    enter("", data)
    while stack:
        where, items = stack[-1]
        for key, value in items:
            if not _valid_text(key):
                return where  # a bad key: name the object that holds it
            name = f"{where}{key}" if key.startswith("[") or not where else f"{where}.{key}"
            if isinstance(value, str):
                if not _valid_text(value):
                    return name
            elif isinstance(value, dict | list):
                enter(name, value)
                break
        else:
            stack.pop()
    return None


def _valid_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Fields:
    """Typed, optional reads from a JSON object; a wrong type is a 400 naming the field."""

    def __init__(self, data: Any, where: str = "") -> None:
        if not isinstance(data, dict):
            raise APIError(400, f"{where or 'the request body'} must be a JSON object")
        self.data: dict[str, Any] = data
        self.where = where

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def raw(self, key: str) -> Any:
        return self.data.get(key)

    def bool(self, key: str, default: bool = False) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise APIError(400, f"{self._name(key)} must be true or false", param=self._name(key))
        return value

    def number(self, key: str) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise APIError(400, f"{self._name(key)} must be a number", param=self._name(key))
        return float(value)

    def integer(self, key: str, minimum: int | None = None) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise APIError(400, f"{self._name(key)} must be an integer", param=self._name(key))
        if minimum is not None and value < minimum:
            raise APIError(400, f"{self._name(key)} must be >= {minimum}, got {value}",
                           param=self._name(key))
        return value

    def string(self, key: str, default: str | None = None) -> str | None:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise APIError(400, f"{self._name(key)} must be a string", param=self._name(key))
        return value

    def stop(self, key: str = "stop", limit: int = 16) -> tuple[str, ...]:
        """A string or a list of strings (empty strings ignored)."""
        value = self.data.get(key)
        if value is None:
            return ()
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
            raise APIError(400, f"{self._name(key)} must be a string or a list of strings",
                           param=self._name(key))
        if len(items) > limit:
            raise APIError(400, f"{self._name(key)} has {len(items)} strings; at most {limit}",
                           param=self._name(key))
        return tuple(s for s in items if s)

    def refuse(self, key: str, why: str, allowed: tuple[Any, ...] = (None,)) -> None:
        """A 400 when ``key`` is set to anything but one of ``allowed``."""
        value = self.data.get(key)
        if value in allowed or (isinstance(value, list | dict) and not value and None in allowed):
            return
        raise APIError(400, f"{self._name(key)} is not supported: {why}", param=self._name(key))


def sampling_overrides(f: Fields, names: dict[str, str]) -> dict[str, Any]:
    """Map request fields to SamplingParams fields: ``names`` is {request key: param name}."""
    out: dict[str, Any] = {}
    for key, name in names.items():
        if not f.has(key):
            continue
        if name in ("top_k",):
            out[name] = f.integer(key)
        elif name == "seed":
            out[name] = f.integer(key, minimum=0)
        else:
            out[name] = f.number(key)
    return out


def message_text(content: Any, where: str) -> str:
    """Message content: a string, or OpenAI content parts of type text (joined)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for i, part in enumerate(content):
            p = Fields(part, f"{where}[{i}]")
            kind = p.string("type", "text")
            if kind != "text":
                raise APIError(400, f"{where}[{i}]: content of type {kind!r} is not supported "
                               "(text only)", param=where)
            parts.append(p.string("text", "") or "")
        return "".join(parts)
    raise APIError(400, f"{where} must be a string or a list of text parts", param=where)


ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
         "tool": "user"}


def _calls_as_text(calls: Any, where: str) -> list[str]:
    if not isinstance(calls, list):
        raise APIError(400, f"{where} must be a list", param=where)
    out = []
    for j, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise APIError(400, f"{where}[{j}] must have a function with a name", param=where)
        out.append(call_text(fn["name"], fn.get("arguments") or {}))
    return out


def chat_messages(value: Any, key: str = "messages") -> list[ChatMessage]:
    """Validated chat messages; several system messages are joined into one, first."""
    if not isinstance(value, list) or not value:
        raise APIError(400, f"{key} must be a non-empty list of messages", param=key)
    systems: list[str] = []
    turns: list[ChatMessage] = []
    for i, item in enumerate(value):
        m = Fields(item, f"{key}[{i}]")
        role = m.string("role")
        if role not in ROLES:
            raise APIError(400, f"{key}[{i}].role must be system, user, assistant or tool, "
                           f"got {role!r}", param=f"{key}[{i}].role")
        if m.data.get("images"):
            raise APIError(400, f"{key}[{i}]: images are not supported", param=f"{key}[{i}]")
        if m.data.get("tool_calls") and role != "assistant":
            raise APIError(400, f"{key}[{i}]: only assistant messages carry tool_calls",
                           param=f"{key}[{i}]")
        text = message_text(m.raw("content"), f"{key}[{i}].content")
        if role == "assistant" and m.data.get("tool_calls"):
            text = "\n".join([*([text] if text else []), *_calls_as_text(m.raw("tool_calls"),
                                                                       f"{key}[{i}].tool_calls")])
        elif role == "tool":  # a function's result, as the next turn the model reads
            name = m.data.get("name") or m.data.get("tool_name") or "the function"
            text = result_text(str(name), text)
        if ROLES[role] == "system":
            if text:
                systems.append(text)
        else:
            turns.append(ChatMessage(ROLES[role], text))  # type: ignore[arg-type]
    if not turns:
        raise APIError(400, f"{key} needs at least one user or assistant message", param=key)
    head = [ChatMessage("system", "\n\n".join(systems))] if systems else []
    return head + turns


# --- planning: the request fitted to the loaded model ---------------------------------


@dataclass(frozen=True)
class Planned:
    """The prompt the model will see and the sampling it will use."""

    prompt: Prompt
    params: SamplingParams


def plan(engine: EngineLike, req: GenRequest, defaults: SamplingParams) -> Planned:
    """Choose max_new_tokens and build the prompt (trimmed by the app's budget rules).

    Without an explicit ``max_tokens`` the reply gets the default length, cut to what the
    context leaves after the prompt (at least a quarter of the context, older turns
    dropped to make room). An explicit value must be below the context length; a raw
    prompt that does not fit beside it is refused rather than cut.
    """
    info = engine.info
    if info is None:
        raise APIError(503, "no model is loaded", headers={"Retry-After": "5"})
    ctx = info.context_length
    params = req.sampling(defaults)
    if req.max_tokens is not None and req.max_tokens >= ctx:
        raise APIError(400, f"max_tokens ({req.max_tokens}) must be below the model's context "
                       f"length ({ctx})", param="max_tokens")
    probe = engine.preview_prompt(req.messages, replace(params, max_new_tokens=1), req.mode,
                                  thinking=req.thinking)
    if req.max_tokens is None:
        room = ctx - probe.prompt_tokens
        params = replace(params, max_new_tokens=max(1, min(params.max_new_tokens,
                                                           max(room, ctx // 4))))
    fits = probe.prompt_tokens + params.max_new_tokens <= ctx and not probe.truncated
    prompt = probe if fits and not probe.dropped_messages else engine.preview_prompt(
        req.messages, params, req.mode, thinking=req.thinking)
    if not req.cache_prompt:  # the engine drops its KV cache first: nothing is reused
        prompt = replace(prompt, cached_tokens=0)
    if req.strict_context and prompt.truncated:
        raise APIError(400, f"the prompt is {probe.prompt_tokens} tokens; with max_tokens "
                       f"{params.max_new_tokens} that is more than the model's context length "
                       f"({ctx})", param="prompt", code="context_length_exceeded")
    return Planned(prompt, params)
