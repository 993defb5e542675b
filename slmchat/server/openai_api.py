"""OpenAI-compatible routes: /v1/models, /v1/chat/completions, /v1/completions.

Request fields that slmchat cannot honour are refused with a 400 that says why (n > 1,
logprobs, tools, JSON mode, additive frequency/presence penalties) rather than silently
ignored; unknown extra fields are ignored as other local servers do. Extensions, as in
llama-server and vLLM: ``top_k``, ``min_p``, ``repetition_penalty``.

Thinking models: the reasoning block comes back apart from the answer, as
``reasoning_content`` (the message's, and streamed deltas'), the convention of
OpenAI-compatible servers (vLLM, llama-server, DeepSeek); ``chat_template_kwargs:
{"enable_thinking": false}`` or ``reasoning_effort: "none"`` turns it off where the
chat template has the switch (a template without it ignores both).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from slmchat.engine.generation.constraints import Constraint
from slmchat.engine.generation.decode import GenerationChunk
from slmchat.engine.generation.toolcalls import with_tools
from slmchat.server.admission import Admitted, admit, finish_reason, read_json
from slmchat.server.errors import APIError, error_body
from slmchat.server.requests import (
    Fields,
    GenRequest,
    chat_messages,
    constraint_of,
    sampling_overrides,
)
from slmchat.server.state import state_of
from slmchat.server.tools import call_id, checked_constraint, parse_tools, read_call

SAMPLING = {"temperature": "temperature", "top_p": "top_p", "seed": "seed", "top_k": "top_k",
            "min_p": "min_p", "repetition_penalty": "repetition_penalty"}
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
EFFORTS = ("none", "minimal", "low", "medium", "high")


def _common(f: Fields) -> dict[str, Any]:
    """Fields shared by chat and text completions, checked; returns GenRequest kwargs."""
    n = f.integer("n")
    if n is not None and n != 1:
        raise APIError(400, f"n={n} is not supported: this server makes one completion per "
                       "request (send n=1 or leave it out)", param="n")
    for key in ("frequency_penalty", "presence_penalty"):
        value = f.number(key)
        if value not in (None, 0.0):
            raise APIError(400, f"{key} is not supported: slmchat uses a multiplicative "
                           "repetition_penalty instead (send repetition_penalty, 1.0 = off, "
                           f"or {key}=0)", param=key)
    f.refuse("logit_bias", "token biases are not implemented", (None,))
    max_tokens = f.integer("max_completion_tokens", minimum=1)
    if max_tokens is None:
        max_tokens = f.integer("max_tokens", minimum=1)
    stream_options = Fields(f.raw("stream_options") or {}, "stream_options")
    return {
        "model": f.string("model"),
        "stream": f.bool("stream"),
        "max_tokens": max_tokens,
        "overrides": {**sampling_overrides(f, SAMPLING), "stop": f.stop(limit=4)},
        "include_usage": stream_options.bool("include_usage"),
        "cache_prompt": f.bool("cache_prompt", default=True),  # llama-server's field
    }


def parse_chat(body: Any) -> GenRequest:
    f = Fields(body)
    if f.raw("logprobs") not in (None, False) or f.has("top_logprobs"):
        raise APIError(400, "logprobs are not supported by this server", param="logprobs")
    f.refuse("functions", "the legacy functions field is not implemented: use tools", (None,))
    plan = parse_tools(f.raw("tools"), f.raw("tool_choice"))
    constraint = _response_format(f.raw("response_format"))
    messages = chat_messages(f.raw("messages"))
    if plan is not None:
        if constraint is not None:
            raise APIError(400, "response_format and tools cannot be combined", param="tools")
        messages, constraint = with_tools(messages, plan), checked_constraint(plan)
    return GenRequest(messages=messages, mode="chat", constraint=constraint, tools=plan,
                      thinking=_thinking(f), prediction=_prediction(f.raw("prediction")),
                      **_common(f))


def _prediction(value: Any) -> str | None:
    """Predicted Outputs: ``{"type": "content", "content": str | [{"type": "text",
    "text": str}, ...]}``, the text the reply is expected to repeat (a file being edited);
    it becomes the speculative draft, and usage reports how much of it the reply kept."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind != "content":
        raise APIError(400, 'prediction must be {"type": "content", "content": ...}',
                       param="prediction")
    content = value.get("content")
    if isinstance(content, list):
        parts = [p.get("text") if isinstance(p, dict) and p.get("type") == "text" else None
                 for p in content]
        if any(not isinstance(t, str) for t in parts):
            raise APIError(400, 'prediction.content parts must be {"type": "text", "text": str}',
                           param="prediction")
        content = "".join(t for t in parts if isinstance(t, str))
    if not isinstance(content, str):
        raise APIError(400, "prediction.content must be a string or a list of text parts",
                       param="prediction")
    return content or None


def _thinking(f: Fields) -> bool | None:
    """enable_thinking: ``chat_template_kwargs.enable_thinking`` (vLLM's and llama-server's
    field) first; else ``reasoning_effort`` "none" is off and any other effort on; with
    neither, None: the template's default. Other template kwargs are not passed on."""
    kwargs = f.raw("chat_template_kwargs")
    if kwargs is not None:
        template = Fields(kwargs, "chat_template_kwargs")
        if template.has("enable_thinking"):
            return template.bool("enable_thinking")
    effort = f.string("reasoning_effort")
    if effort is None:
        return None
    if effort not in EFFORTS:
        raise APIError(400, f"reasoning_effort must be one of {', '.join(EFFORTS)}, got "
                       f"{effort!r}", param="reasoning_effort")
    return effort != "none"


def _response_format(fmt: Any) -> Constraint | None:
    """OpenAI's response_format: text, json_object, or json_schema {name, schema, strict}
    (the official client's ``chat.completions.parse`` sends the last, strict)."""
    if fmt in (None, {}):
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return constraint_of("response_format")
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise APIError(400, "response_format.json_schema.schema must be a JSON schema object",
                           param="response_format")
        return constraint_of("response_format", schema)
    raise APIError(400, "response_format.type must be text, json_object or json_schema",
                   param="response_format")


def parse_completion(body: Any) -> GenRequest:
    from slmchat.engine.generation.prompting import ChatMessage

    f = Fields(body)
    prompt = f.raw("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise APIError(400, "prompt must be a string (one prompt per request; token arrays "
                       "are not supported)", param="prompt")
    if not prompt:
        raise APIError(400, "prompt is empty", param="prompt")
    if f.raw("logprobs") not in (None, 0):
        raise APIError(400, "logprobs are not supported by this server", param="logprobs")
    f.refuse("suffix", "insertion (suffix) is not implemented", (None, ""))
    best_of = f.integer("best_of")
    if best_of not in (None, 1):
        raise APIError(400, "best_of > 1 is not supported", param="best_of")
    return GenRequest(messages=[ChatMessage("user", prompt)], mode="raw", strict_context=True,
                      echo=f.bool("echo"), **_common(f))


def _usage(admitted: Admitted, last: GenerationChunk | None) -> dict[str, Any]:
    """Token counts; ``cached_tokens``: prompt tokens reused from the previous request's
    KV cache (a conversation that grows by a turn reuses all of its earlier prompt)."""
    prompt = last.prompt_tokens if last else admitted.planned.prompt.prompt_tokens
    new = last.new_tokens if last else 0
    return {"prompt_tokens": prompt, "completion_tokens": new, "total_tokens": prompt + new,
            "prompt_tokens_details": {"cached_tokens": last.cached_tokens if last else 0},
            "completion_tokens_details": {
                "reasoning_tokens": last.reasoning_tokens if last else 0,
                # speculative decoding: drafted tokens the reply kept / discarded (from a
                # request's prediction, or prompt lookup and draft models where they run)
                "accepted_prediction_tokens": last.accepted if last else 0,
                "rejected_prediction_tokens": last.drafted - last.accepted if last else 0}}


def _fingerprint(admitted: Admitted, reused: bool) -> str | None:
    """The model's fingerprint, with "-kv" when the prompt reused the KV cache of an
    earlier request (its reply can differ from a fresh prefill's: send cache_prompt
    false for the fresh one)."""
    info = admitted.worker.engine.info
    return f"slmchat-{info.fingerprint}{'-kv' if reused else ''}" if info else None


def sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"


class _Shape:
    """The JSON objects of one response (chat or text completion)."""

    def __init__(self, admitted: Admitted, chat: bool) -> None:
        self.admitted = admitted
        self.chat = chat
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        # What the plan says is reused; each chunk (and the whole reply) then says it.
        self.reused = admitted.planned.prompt.cached_tokens > 0

    def seen(self, last: GenerationChunk | None) -> None:
        if last is not None:
            self.reused = last.cached_tokens > 0

    def _head(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.admitted.created, "model": self.admitted.model,
                "system_fingerprint": _fingerprint(self.admitted, self.reused)}

    def tool_calls(self, text: str, req: GenRequest) -> list[dict[str, Any]] | None:
        """The reply as OpenAI tool_calls when it is a call of an offered function."""
        call = read_call(text, req.tools) if req.tools is not None else None
        if call is None:
            return None
        return [{"id": call_id(), "type": "function",
                 "function": {"name": call[0], "arguments": json.dumps(call[1], ensure_ascii=False)}}]

    def whole(self, text: str, last: GenerationChunk, req: GenRequest | None = None,
              reasoning: str = "") -> dict[str, Any]:
        self.seen(last)
        reason = finish_reason(last)
        calls = self.tool_calls(text, req) if req is not None else None
        thought = {"reasoning_content": reasoning} if reasoning else {}
        if self.chat and calls:
            choice = {"index": 0, "message": {"role": "assistant", "content": None, **thought,
                                              "tool_calls": calls},
                      "logprobs": None, "finish_reason": "tool_calls"}
            obj = "chat.completion"
        elif self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text, **thought},
                      "logprobs": None, "finish_reason": reason}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
            obj = "text_completion"
        return {**self._head(obj), "choices": [choice], "usage": _usage(self.admitted, last)}

    def part(self, text: str | None, reason: str | None = None, role: bool = False) -> dict[str, Any]:
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else (
                {} if text is None else {"content": text})
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
            return {**self._head("chat.completion.chunk"), "choices": [choice]}
        choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": reason}
        return {**self._head("text_completion"), "choices": [choice]}

    def reasoning_part(self, text: str) -> dict[str, Any]:
        """A streamed piece of the reasoning block (``delta.reasoning_content``)."""
        choice = {"index": 0, "delta": {"reasoning_content": text}, "logprobs": None,
                  "finish_reason": None}
        return {**self._head("chat.completion.chunk"), "choices": [choice]}

    def call_part(self, calls: list[dict[str, Any]]) -> dict[str, Any]:
        """The streamed tool calls, whole, in one delta (OpenAI's clients join deltas)."""
        delta = {"tool_calls": [{"index": i, **c} for i, c in enumerate(calls)]}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        return {**self._head("chat.completion.chunk"), "choices": [choice]}

    def usage(self, last: GenerationChunk | None) -> dict[str, Any]:
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        return {**self._head(obj), "choices": [], "usage": _usage(self.admitted, last)}


async def _events(admitted: Admitted, shape: _Shape, req: GenRequest) -> AsyncIterator[bytes]:
    """SSE events to ``data: [DONE]``; an error mid-stream is an error event, then DONE."""
    last: GenerationChunk | None = None
    try:
        if shape.chat:
            yield sse(shape.part(None, role=True))
        elif req.echo:
            yield sse(shape.part(req.messages[-1].content))
        try:
            held: list[str] = []  # with tools: the reply is a call or text, known at its end
            async for chunk in admitted.chunks():
                last = chunk
                shape.seen(chunk)
                if chunk.reasoning and shape.chat:
                    yield sse(shape.reasoning_part(chunk.reasoning))
                if chunk.text and req.tools is not None:
                    held.append(chunk.text)
                elif chunk.text:
                    yield sse(shape.part(chunk.text))
            calls = shape.tool_calls("".join(held), req) if req.tools is not None else None
            if calls:
                yield sse(shape.call_part(calls))
                yield sse(shape.part(None, "tool_calls"))
            else:
                if held:
                    yield sse(shape.part("".join(held)))
                yield sse(shape.part(None, finish_reason(last)))
            if req.include_usage:
                yield sse(shape.usage(last))
        except APIError as exc:
            yield sse(error_body("/v1", exc.status, exc.message, exc.param, exc.code))
        yield b"data: [DONE]\n\n"
    finally:
        admitted.close()


async def _complete(request: Request, req: GenRequest, chat: bool) -> Response:
    admitted = await admit(request, req, "openai")
    shape = _Shape(admitted, chat)
    if req.stream:
        return StreamingResponse(_events(admitted, shape, req), media_type="text/event-stream",
                                 headers=SSE_HEADERS)
    text, last = await admitted.collect()
    if req.echo:
        text = req.messages[-1].content + text
    return JSONResponse(shape.whole(text, last, req, admitted.reasoning))


async def chat_completions(request: Request) -> Response:
    return await _complete(request, parse_chat(await read_json(request)), chat=True)


async def completions(request: Request) -> Response:
    return await _complete(request, parse_completion(await read_json(request)), chat=False)


def _model_obj(state_started: int, name: str, context: int | None = None) -> dict[str, Any]:
    """A model object; with its context length as vLLM (``max_model_len``) and LM Studio
    (``context_length``) send it, for clients that size conversations by it."""
    obj: dict[str, Any] = {"id": name, "object": "model", "created": state_started,
                           "owned_by": "slmchat"}
    if context:
        obj |= {"max_model_len": context, "context_length": context}
    return obj


async def list_models(request: Request) -> Response:
    state = state_of(request)
    names, contexts = await asyncio.to_thread(
        lambda: (state.catalog.names(), state.catalog.context_lengths()))
    return JSONResponse({"object": "list", "data": [
        _model_obj(state.started, n, contexts.get(n)) for n in names]})


async def get_model(request: Request) -> Response:
    state = state_of(request)
    name = request.path_params["name"]
    choice, contexts = await asyncio.to_thread(
        lambda: (state.catalog.resolve(name), state.catalog.context_lengths()))
    return JSONResponse(_model_obj(state.started, choice.name, contexts.get(choice.name)))


def routes() -> list[Route]:
    return [
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{name:path}", get_model, methods=["GET"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
    ]
