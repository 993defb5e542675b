"""Ollama-compatible routes: /api/tags, /api/version, /api/ps, /api/show, /api/chat,
/api/generate.

Streams are NDJSON (one JSON object per line, the last with ``done: true`` and the
counts and durations in nanoseconds); ``stream: false`` gives one object. A request with
no messages (chat) or an empty prompt (generate) only loads the model, as in Ollama.
``options`` takes temperature, top_p, top_k, min_p, num_predict (-1/-2: as much as the
context allows), seed, stop and repeat_penalty; other options (num_ctx, num_thread, ...)
are accepted and ignored, as Ollama ignores what a runner does not use.
``cache_prompt: false`` (llama-server's field, at the top level or in ``options``): no KV
reuse from the previous request, the reply is a fresh prefill's.
Thinking models: the reasoning block comes back apart, as ``message.thinking`` (chat) or
``thinking`` (generate), streamed too; ``think: false`` turns it off where the chat
template has the switch (``true`` or an effort level turns it on; a template without the
switch ignores it).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from slmchat import __version__
from slmchat.engine.generation.decode import GenerationChunk
from slmchat.engine.generation.prompting import ChatMessage
from slmchat.engine.generation.reasoning import thinks
from slmchat.engine.generation.toolcalls import with_tools
from slmchat.engine.model.discovery import ModelEntry
from slmchat.engine.model.spec import ModelInfo
from slmchat.server.admission import Admitted, admit, ensure_model, finish_reason, read_json
from slmchat.server.catalog import bare, param_count
from slmchat.server.errors import APIError
from slmchat.server.requests import (
    Fields,
    GenRequest,
    chat_messages,
    constraint_of,
    sampling_overrides,
)
from slmchat.server.state import ServerState, state_of
from slmchat.server.tools import checked_constraint, parse_tools, read_call

# The Ollama API level these routes follow (clients compare it to enable features).
OLLAMA_API_VERSION = "0.12.0"
OPTIONS = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
           "seed": "seed", "repeat_penalty": "repetition_penalty"}


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _options(f: Fields) -> dict[str, Any]:
    """GenRequest kwargs from ``options`` (and the request's ``stream``/``model``)."""
    opts = Fields(f.raw("options") or {}, "options")
    for key in ("frequency_penalty", "presence_penalty"):
        if opts.number(key) not in (None, 0.0):
            raise APIError(400, f"options.{key} is not supported: use options.repeat_penalty")
    num_predict = opts.integer("num_predict")
    if num_predict is not None and num_predict < 0:
        num_predict = None  # -1 (no limit) / -2 (fill the context): what the context allows
    elif num_predict == 0:
        raise APIError(400, "options.num_predict must be >= 1 (or -1 for no limit)")
    fmt = f.raw("format")
    if fmt in (None, ""):
        constraint = None
    elif fmt == "json":
        constraint = constraint_of("format")
    elif isinstance(fmt, dict):  # a JSON schema (the ollama client's format=Model.model_json_schema())
        constraint = constraint_of("format", fmt)
    else:
        raise APIError(400, 'format must be "json" or a JSON schema object')
    # llama-server's cache_prompt, at the top level or among the options
    cache_prompt = f.bool("cache_prompt", default=True) and opts.bool("cache_prompt", default=True)
    return {
        "model": f.string("model"),
        "stream": f.bool("stream", default=True),
        "cache_prompt": cache_prompt,
        "max_tokens": num_predict,
        "constraint": constraint,
        "overrides": {**sampling_overrides(opts, OPTIONS), "stop": opts.stop(limit=16)},
        "thinking": _think(f.raw("think")),
    }


def _think(value: Any) -> bool | None:
    """Ollama's ``think``: true / false, or an effort level (gpt-oss) that means on."""
    if value is None or isinstance(value, bool):
        return value
    if value in ("high", "medium", "low"):
        return True
    raise APIError(400, 'think must be true, false, "high", "medium" or "low"')


def _stats(admitted: Admitted, last: GenerationChunk | None) -> dict[str, Any]:
    end = time.perf_counter()
    first = admitted.worker.first_token_at or end
    ttft = last.ttft_s if last and last.ttft_s is not None else first - admitted.worker.started
    return {
        "total_duration": int((end - admitted.t0) * 1e9),
        "load_duration": int(max(0.0, admitted.worker.started - admitted.t0) * 1e9),
        "prompt_eval_count": last.prompt_tokens if last else admitted.planned.prompt.prompt_tokens,
        "prompt_eval_duration": int(ttft * 1e9),
        "eval_count": last.new_tokens if last else 0,
        "eval_duration": int(max(0.0, end - first) * 1e9),
    }


def _line(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


def _piece(chat: bool, text: str, req: GenRequest | None = None,
           thinking: str = "") -> dict[str, Any]:
    """The reply text (and ``thinking``, the reasoning, when there is some); with tools, a
    reply that calls an offered function is Ollama's message.tool_calls (arguments as an
    object) instead."""
    call = read_call(text, req.tools) if req is not None and req.tools is not None else None
    thought = {"thinking": thinking} if thinking else {}
    if chat and call is not None:
        return {"message": {"role": "assistant", "content": "", **thought,
                            "tool_calls": [{"function": {"name": call[0], "arguments": call[1]}}]}}
    if chat:
        return {"message": {"role": "assistant", "content": text, **thought}}
    return {"response": text, **thought}


async def _lines(admitted: Admitted, chat: bool, req: GenRequest) -> AsyncIterator[bytes]:
    """NDJSON lines; the last has done: true and the stats (or is an error line). With
    tools the reply is held to its end: a call or text, known only then."""
    last: GenerationChunk | None = None
    held: list[str] = []
    try:
        try:
            async for chunk in admitted.chunks():
                last = chunk
                if chunk.reasoning:
                    yield _line({"model": admitted.model, "created_at": _now(),
                                 **_piece(chat, "", thinking=chunk.reasoning), "done": False})
                if chunk.text and req.tools is not None:
                    held.append(chunk.text)
                elif chunk.text:
                    yield _line({"model": admitted.model, "created_at": _now(),
                                 **_piece(chat, chunk.text), "done": False})
            if held:
                yield _line({"model": admitted.model, "created_at": _now(),
                             **_piece(chat, "".join(held), req), "done": False})
            yield _line({"model": admitted.model, "created_at": _now(), **_piece(chat, ""),
                         "done": True, "done_reason": finish_reason(last), **_stats(admitted, last)})
        except APIError as exc:
            yield _line({"error": exc.message})
    finally:
        admitted.close()


async def _generate(request: Request, req: GenRequest, chat: bool) -> Response:
    admitted = await admit(request, req, "ollama")
    if req.stream:
        return StreamingResponse(_lines(admitted, chat, req), media_type="application/x-ndjson")
    text, last = await admitted.collect()
    return JSONResponse({"model": admitted.model, "created_at": _now(),
                         **_piece(chat, text, req, admitted.reasoning),
                         "done": True, "done_reason": finish_reason(last), **_stats(admitted, last)})


async def _load_only(request: Request, name: str | None, chat: bool) -> Response:
    model = await ensure_model(request, name)
    return JSONResponse({"model": model, "created_at": _now(), **_piece(chat, ""),
                         "done": True, "done_reason": "load"})


async def chat(request: Request) -> Response:
    f = Fields(await read_json(request))
    kwargs = _options(f)
    if not f.raw("messages"):
        return await _load_only(request, kwargs["model"], chat=True)
    messages = chat_messages(f.raw("messages"))
    plan = parse_tools(f.raw("tools"), None)
    if plan is not None:
        if kwargs["constraint"] is not None:
            raise APIError(400, "format and tools cannot be combined")
        messages, kwargs["constraint"] = with_tools(messages, plan), checked_constraint(plan)
    req = GenRequest(messages=messages, mode="chat", tools=plan, **kwargs)
    return await _generate(request, req, chat=True)


async def generate(request: Request) -> Response:
    f = Fields(await read_json(request))
    kwargs = _options(f)
    if f.raw("images"):
        raise APIError(400, "images are not supported by this server")
    if f.string("suffix"):
        raise APIError(400, "suffix (insertion) is not supported by this server")
    if f.raw("tools"):
        raise APIError(400, "tools are for /api/chat (a conversation), not /api/generate")
    prompt = f.string("prompt", "") or ""
    if not prompt:
        return await _load_only(request, kwargs["model"], chat=False)
    system = f.string("system", "") or ""
    if f.bool("raw"):
        req = GenRequest(messages=[ChatMessage("user", prompt)], mode="raw",
                         strict_context=True, **kwargs)
    else:
        messages = [ChatMessage("system", system)] if system else []
        req = GenRequest(messages=[*messages, ChatMessage("user", prompt)], mode="chat", **kwargs)
    return await _generate(request, req, chat=False)


# --- model information ------------------------------------------------------------------


def _size_label(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}".replace(".0", "")
    return str(n)


def _details(fmt: str, arch: str, n_params: int, quant: str, parent: str | None) -> dict[str, Any]:
    family = arch.lower().removesuffix("forcausallm").removesuffix("lmheadmodel") or "unknown"
    return {"parent_model": parent or "", "format": fmt, "family": family, "families": [family],
            "parameter_size": _size_label(n_params), "quantization_level": quant}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _loaded_entry(info: ModelInfo) -> dict[str, Any]:
    quant = info.quant.upper() if info.quant != "none" else info.dtype.upper()
    fmt = "gguf" if info.kind == "gguf" else "safetensors"
    return {"name": info.name, "model": info.name, "modified_at": _now(),
            "size": info.footprint_bytes, "digest": _digest(info.fingerprint),
            "details": _details(fmt, info.architecture, param_count(info.path, info.n_params),
                                quant, info.adapter)}


def _disk_entry(e: ModelEntry) -> dict[str, Any]:
    try:
        modified = datetime.fromtimestamp(Path(e.path).stat().st_mtime, UTC)
    except OSError:
        modified = datetime.now(UTC)
    quant = e.dtype.upper() if e.format in ("safetensors", "lora") else e.format.upper()
    return {"name": e.name, "model": e.name,
            "modified_at": modified.isoformat().replace("+00:00", "Z"), "size": e.size_bytes,
            "digest": _digest(e.path),
            "details": _details(e.format, e.architecture, param_count(e.path, e.n_params), quant,
                                e.base)}


def _tags(state: ServerState) -> list[dict[str, Any]]:
    info = state.engine.info
    out = [_loaded_entry(info)] if info else []
    found = {e.name: e for e in state.catalog.entries()}
    for name in state.catalog.names()[1:]:
        entry = found.get(name)
        out.append(_disk_entry(entry) if entry else _name_only(name))
    return out


def _name_only(name: str) -> dict[str, Any]:
    """A loadable model known only by name (the start model, after a swap)."""
    return {"name": name, "model": name, "modified_at": _now(), "size": 0,
            "digest": _digest(name), "details": _details("safetensors", "?", 0, "", None)}


async def tags(request: Request) -> Response:
    return JSONResponse({"models": await asyncio.to_thread(_tags, state_of(request))})


def _ps(state: ServerState) -> list[dict[str, Any]]:
    info = state.engine.info
    if info is None:
        return []
    return [{**_loaded_entry(info), "expires_at": "2999-01-01T00:00:00Z",
             "size_vram": info.footprint_bytes if info.device != "cpu" else 0,
             "context_length": info.context_length}]


async def ps(request: Request) -> Response:
    return JSONResponse({"models": await asyncio.to_thread(_ps, state_of(request))})


async def version(request: Request) -> Response:
    return JSONResponse({"version": OLLAMA_API_VERSION, "slmchat": __version__})


def chat_template_of(path: str) -> str:
    """The chat template stored in a model folder (the loader renders the same one)."""
    folder = Path(path)
    jinja = folder / "chat_template.jinja"
    try:
        if jinja.is_file():
            return jinja.read_text(encoding="utf-8")
        for name in ("chat_template.json", "tokenizer_config.json"):
            file = folder / name
            if file.is_file():
                value = json.loads(file.read_text(encoding="utf-8")).get("chat_template")
                if isinstance(value, str):
                    return value
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        pass
    return ""


def _show(state: ServerState, name: str) -> dict[str, Any]:
    choice = state.catalog.resolve(name)
    info = state.engine.info
    d = state.config.defaults
    params = [f"temperature {d.temperature}", f"top_p {d.top_p}", f"top_k {d.top_k}",
              f"repeat_penalty {d.repetition_penalty}", f"num_predict {d.max_new_tokens}"]
    if choice.load is None and info is not None:
        entry = _loaded_entry(info)
        arch, ctx, path = info.architecture, info.context_length, info.path
        n = param_count(path, info.n_params)
        has_template = info.has_chat_template
    else:
        e = next((e for e in state.catalog.entries() if e.name == choice.name), None)
        if e is None:  # the start model after a swap: loadable, not inspected
            e = ModelEntry(name=choice.name, path=choice.load.path if choice.load else "",
                           source="start", format="safetensors")
        entry = _disk_entry(e)
        arch, ctx, path = e.architecture, e.context_length, e.path
        n = param_count(path, e.n_params)
        has_template = e.has_chat_template
    params.append(f"num_ctx {ctx}")
    template = chat_template_of(path) if has_template else ""
    # tools: this server answers `tools` on any chat model, as a call constrained to the
    # function's schema (server/tools.py), so clients such as oterm may offer them.
    capabilities = ["completion", *(["tools"] if template else []),
                    *(["thinking"] if thinks(template) else [])]
    modelfile = f"# slmchat model {entry['name']}\nFROM {path}\n" + "".join(
        f"PARAMETER {p}\n" for p in params)
    return {
        "modelfile": modelfile, "parameters": "\n".join(params), "template": template,
        "details": entry["details"], "modified_at": entry["modified_at"],
        "model_info": {"general.architecture": arch, "general.parameter_count": n,
                       f"{entry['details']['family']}.context_length": ctx},
        "capabilities": capabilities,
    }


async def show(request: Request) -> Response:
    f = Fields(await read_json(request))
    name = f.string("model") or f.string("name")
    if not name:
        raise APIError(400, "model is required")
    return JSONResponse(await asyncio.to_thread(_show, state_of(request), bare(name)))


def routes() -> list[Route]:
    return [
        Route("/api/version", version, methods=["GET"]),
        Route("/api/tags", tags, methods=["GET"]),
        Route("/api/ps", ps, methods=["GET"]),
        Route("/api/show", show, methods=["POST"]),
        Route("/api/chat", chat, methods=["POST"]),
        Route("/api/generate", generate, methods=["POST"]),
    ]
