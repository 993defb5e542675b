"""The remote runtime: a model served elsewhere (vLLM, SGLang, llama-server, Ollama,
another ``slmchat serve``), reached through a profile of settings.toml.

It works at the conversation level, not the token level: the server applies its own
chat template, so the messages are sent as they are (``preview`` shows them as JSON and
says so), and the reply streams back as text deltas with the server's usage counts.
Timings are measured here (TTFT from the request to the first text, decode tok/s from
the server's token count; Ollama's own eval durations when it gives them).

Failures end the reply with ``finish_reason="error"`` and one line naming the profile
(engine/model/remote_http.py); whatever text arrived stays. Only a connection that
cannot be made is retried (with backoff, before anything was sent).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from slmchat.engine.devices import BusyCores
from slmchat.engine.generation.backends.base import Backend
from slmchat.engine.generation.constraints import Constraint
from slmchat.engine.generation.decode import CancelToken, FinishReason, GenerationChunk
from slmchat.engine.generation.prompting import ChatMessage, Prompt, PromptMode
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model import remote as profiles
from slmchat.engine.model.remote_http import Cancelled, RemoteError, StreamedPost, get_json
from slmchat.engine.model.spec import LoadedModel, ModelInfo, ModelSpec, Progress
from slmchat.engine.runtimes.base import Source
from slmchat.errors import InvalidParameterError, ModelLoadError

# The context a server does not state: large, so that nothing is trimmed here; the
# server itself refuses a prompt that is too long (one line).
UNKNOWN_CONTEXT = 32768
_NEUTRAL = {"top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}


@dataclass(frozen=True)
class Target:
    """What a loaded remote model is: the profile and the server's model id."""

    profile: profiles.RemoteProfile
    model: str


class RemoteRuntime:
    name = "remote"
    tag = ""  # the label says "remote, HOST" already
    interleaves = False  # the server computes: each side of a compare streams in its thread
    scores_sequences = False
    uses_torch = False
    shares_weights = True  # a second engine on the same model is one more HTTP stream

    def unavailable(self) -> str | None:
        try:
            import httpx  # noqa: F401
        except ImportError as exc:  # pragma: no cover - httpx is a dependency
            return f"httpx is not installed ({exc})"
        return None

    def blocker(self, spec: ModelSpec, source: Source) -> str | None:
        return "it runs the models of remote profiles (NAME:model; `slmchat remote list`)"

    def auto_blocker(self, spec: ModelSpec, source: Source) -> str | None:
        return self.blocker(spec, source)

    def skip_note(self, spec: ModelSpec, source: Source) -> str | None:
        return None

    def load(self, spec: ModelSpec, source: Source, name: str, progress: Progress | None,
             warnings: list[str], lite: bool) -> LoadedModel | None:
        return self.load_remote(spec)

    def load_remote(self, spec: ModelSpec) -> LoadedModel:
        """Check that the profile's server lists the model (one request, no weights)."""
        parsed = profiles.parse_path(spec.path)
        if parsed is None:
            raise ModelLoadError(f"{spec.path!r} is not a remote model (NAME:model)")
        name, model_id = parsed
        prof = profiles.profile(name)
        if spec.adapter:
            raise ModelLoadError(f"{name}: a LoRA adapter applies to local models only")
        if not prof.allows(model_id):
            raise ModelLoadError(f"{name}: {model_id!r} is not in the profile's models filter "
                                 f"({', '.join(prof.models)})")
        start = time.perf_counter()
        try:
            listed = profiles.list_models(prof)
        except RemoteError as exc:
            raise ModelLoadError(str(exc)) from None
        found = next((m for m in listed if m.id == model_id), None)
        if found is None:
            shown = ", ".join(m.id for m in listed[:8]) or "none"
            raise ModelLoadError(f"{name}: {prof.host} does not list the model {model_id!r} "
                                 f"(it lists: {shown})")
        version = _server_version(prof)
        info = ModelInfo(
            # NAME:model as typed and as `slmchat serve --with-remote` lists it (the app's
            # lists show the entry's label, "NAME: model")
            name=f"{name}:{model_id}", path=spec.path, kind=profiles.FORMAT,
            architecture=found.owned_by or prof.kind, n_params=found.n_params,
            footprint_bytes=0, load_time_s=time.perf_counter() - start,
            context_length=found.context_length or UNKNOWN_CONTEXT, has_chat_template=True,
            dtype="remote", device=prof.host, quant="none", adapter=None,
            fingerprint=version, runtime=self.name, runtime_tag=self.tag,
        )
        return LoadedModel(spec=spec, model=Target(prof, model_id), tokenizer=None, info=info,
                           extra={"remote_kind": prof.kind, "loopback": prof.loopback})

    def speculates(self, lm: LoadedModel) -> bool:
        return False  # the server decodes; nothing to draft here

    def backend(self, lm: LoadedModel) -> Backend:
        raise ModelLoadError(f"{lm.info.name} runs on its server: it has no token-level backend "
                             "here (perplexity, benchmarks and exports need a local model)")

    def fit_threads(self, lm: LoadedModel, busy: BusyCores, training: bool) -> None:
        return None  # the server's cores do the work

    def after_empty_reply(self, lm: LoadedModel) -> str | None:
        return None

    # -- the conversation level (engine/runtimes.Conversation) -------------------------

    def preview(self, lm: LoadedModel, messages: Sequence[ChatMessage], params: SamplingParams,
                mode: PromptMode = "chat", continue_last: bool = False,
                detail: bool = False) -> Prompt:
        """The messages as they will be sent (JSON), with a rough token estimate: the
        server applies its own template, so the exact prompt is only known there."""
        sent = _wire_messages(messages)
        text = messages[-1].content if mode == "raw" and messages else \
            json.dumps(sent, ensure_ascii=False, indent=2)
        estimate = [_estimate_tokens(m.content) + 4 for m in messages]
        return Prompt(input_ids=[], text=text, prompt_tokens=sum(estimate),
                      context_length=lm.info.context_length, dropped_messages=0,
                      truncated=False, stop=(), format="remote", kept=tuple(messages),
                      message_tokens=tuple(estimate) if detail else ())

    def stream(self, lm: LoadedModel, messages: Sequence[ChatMessage], params: SamplingParams,
               cancel: CancelToken, mode: PromptMode = "chat", continue_last: bool = False,
               constraint: Constraint | None = None) -> Iterator[GenerationChunk]:
        """Stream the server's reply; the last chunk carries the finish, the server's
        usage counts and fingerprint, or the error line (earlier text already yielded)."""
        params.validate()
        if not messages:
            raise InvalidParameterError("the prompt is empty")
        target: Target = lm.model
        prof = target.profile
        run = _Run(params, estimate=sum(_estimate_tokens(m.content) + 4 for m in messages))
        params = replace(params, seed=run.seed)  # sent: a server that honours it repeats
        protocol = _Ollama(target, params) if prof.kind == "ollama" else _OpenAI(target, params)
        path, payload = protocol.request(messages, mode, continue_last, constraint)
        post = StreamedPost(prof, path, payload, lambda: cancel.cancelled)
        try:
            for line in post.lines():
                delta = protocol.parse(line, run)
                if delta:
                    run.text(delta)
                    yield run.chunk(delta)
                if run.finish is not None:
                    break
                if cancel.cancelled:
                    run.finish = "cancelled"
                    break
            else:
                if cancel.cancelled:
                    run.finish = "cancelled"
                elif run.finish is None and run.pending is not None:
                    run.finish = run.pending  # a server that ends without [DONE]
                elif run.finish is None:
                    raise RemoteError(f"{prof.name}: the stream from {prof.host} ended before "
                                      "the reply finished (connection dropped)")
        except Cancelled:
            run.finish = "cancelled"
        except RemoteError as exc:
            run.finish, run.error = "error", str(exc)
        yield run.chunk("", run.finish or "cancelled")


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


def _wire_messages(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


def _server_version(prof: profiles.RemoteProfile) -> str:
    """Ollama's version (its replies carry no fingerprint); "" elsewhere or on failure."""
    if prof.kind != "ollama":
        return ""
    try:
        data = get_json(prof, "/api/version", profiles.LIST_TIMEOUT_S)
    except RemoteError:
        return ""
    version = data.get("version") if isinstance(data, dict) else None
    return f"ollama {version}" if isinstance(version, str) and version else ""


class _Run:
    """Counts and timings of one streamed reply, as GenerationChunks."""

    def __init__(self, params: SamplingParams, estimate: int) -> None:
        self.seed = params.seed if params.seed is not None else random.randrange(2**31)
        self.start = time.perf_counter()
        self.first_at: float | None = None
        self.deltas = 0
        self.prompt_tokens = estimate
        self.new_tokens: int | None = None  # the server's count, once it says
        self.prefill_tps: float | None = None
        self.decode_tps: float | None = None
        self.fingerprint: str | None = None
        self.finish: FinishReason | None = None
        self.pending: FinishReason | None = None  # said by the server; its usage may follow
        self.error: str | None = None

    def text(self, delta: str) -> None:
        if self.first_at is None:
            self.first_at = time.perf_counter()
        self.deltas += 1

    def chunk(self, text: str, reason: FinishReason | None = None) -> GenerationChunk:
        now = time.perf_counter()
        ttft = self.first_at - self.start if self.first_at is not None else None
        n = self.new_tokens if self.new_tokens is not None else self.deltas
        decode = self.decode_tps
        if decode is None:
            span = now - self.first_at if self.first_at is not None else 0.0
            decode = (n - 1) / span if n > 1 and span > 0 else 0.0
        prefill = self.prefill_tps
        if prefill is None:
            prefill = self.prompt_tokens / ttft if ttft else 0.0
        return GenerationChunk(
            text=text, new_tokens=n, prompt_tokens=self.prompt_tokens, ttft_s=ttft,
            prefill_tps=prefill, decode_tps=decode, seed=self.seed, finish_reason=reason,
            error=self.error if reason == "error" else None,
            served_by=self.fingerprint if reason else None,
        )


def _finish(reason: Any) -> FinishReason:
    return "length" if reason == "length" else "stop"


def _schema(constraint: Constraint) -> dict[str, Any]:
    try:
        schema = json.loads(constraint.value)
    except (ValueError, RecursionError) as exc:
        raise InvalidParameterError(f"the JSON schema is not valid JSON: {exc}") from exc
    if not isinstance(schema, dict):
        raise InvalidParameterError("the JSON schema must be an object")
    return schema


def _check_constraint(constraint: Constraint | None, name: str) -> None:
    if constraint is not None and constraint.kind not in ("json", "json_schema"):
        raise InvalidParameterError(f"{name}: a remote model takes --json or --json-schema; "
                                    f"--{constraint.kind} runs on local models")


class _OpenAI:
    """``/v1/chat/completions`` (``/v1/completions`` for a raw prompt), server-sent events."""

    def __init__(self, target: Target, params: SamplingParams) -> None:
        self.target = target
        self.params = params

    def request(self, messages: Sequence[ChatMessage], mode: PromptMode, continue_last: bool,
                constraint: Constraint | None) -> tuple[str, dict[str, Any]]:
        _check_constraint(constraint, self.target.profile.name)
        p = self.params
        payload: dict[str, Any] = {
            "model": self.target.model, "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": p.max_new_tokens, "temperature": p.temperature, "top_p": p.top_p,
        }
        # vLLM, SGLang, llama-server and slmchat serve take these; sent only when they
        # do something, so a strict server is not handed fields it does not know.
        for key, neutral in _NEUTRAL.items():
            if getattr(p, key) != neutral:
                payload[key] = getattr(p, key)
        if "repetition_penalty" in payload:  # llama-server's and llama-cpp-python's name
            payload["repeat_penalty"] = payload["repetition_penalty"]
        if p.seed is not None:
            payload["seed"] = p.seed
        if p.stop:
            payload["stop"] = list(p.stop)
        if constraint is not None:
            payload["response_format"] = {"type": "json_object"} if constraint.kind == "json" \
                else {"type": "json_schema",
                      "json_schema": {"name": "reply", "schema": _schema(constraint)}}
        if mode == "raw":
            payload["prompt"] = messages[-1].content
            return "/completions", payload
        payload["messages"] = _wire_messages(messages)
        if continue_last:  # vLLM / SGLang: go on with the last assistant message
            payload["continue_final_message"] = True
            payload["add_generation_prompt"] = False
        return "/chat/completions", payload

    def parse(self, line: str, run: _Run) -> str:
        line = line.strip()
        if not line.startswith("data:"):
            return ""
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            run.finish = run.finish or run.pending or "stop"
            return ""
        try:
            event = json.loads(data)
        except ValueError:
            return ""
        if not isinstance(event, dict):
            return ""
        prof = self.target.profile
        if event.get("error"):
            err = event["error"]
            said = err.get("message") if isinstance(err, dict) else err
            raise RemoteError(f"{prof.name}: {prof.host} stopped the reply: {said}")
        if isinstance(event.get("system_fingerprint"), str) and event["system_fingerprint"]:
            run.fingerprint = event["system_fingerprint"]
        usage = event.get("usage")
        if isinstance(usage, dict):
            if isinstance(usage.get("prompt_tokens"), int):
                run.prompt_tokens = usage["prompt_tokens"]
            if isinstance(usage.get("completion_tokens"), int):
                run.new_tokens = usage["completion_tokens"]
        text = ""
        for choice in event.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            piece = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            if isinstance(piece, str):
                text += piece
            if choice.get("finish_reason"):
                # the usage event follows the finish one: keep reading until [DONE]
                run.pending = _finish(choice["finish_reason"])
        return text


class _Ollama:
    """Ollama's ``/api/chat`` (``/api/generate`` raw), one JSON object per line."""

    def __init__(self, target: Target, params: SamplingParams) -> None:
        self.target = target
        self.params = params

    def request(self, messages: Sequence[ChatMessage], mode: PromptMode, continue_last: bool,
                constraint: Constraint | None) -> tuple[str, dict[str, Any]]:
        _check_constraint(constraint, self.target.profile.name)
        p = self.params
        options: dict[str, Any] = {
            "temperature": p.temperature, "top_p": p.top_p, "top_k": p.top_k, "min_p": p.min_p,
            "repeat_penalty": p.repetition_penalty, "num_predict": p.max_new_tokens,
        }
        if p.seed is not None:
            options["seed"] = p.seed
        if p.stop:
            options["stop"] = list(p.stop)
        payload: dict[str, Any] = {"model": self.target.model, "stream": True, "options": options}
        if constraint is not None:
            payload["format"] = "json" if constraint.kind == "json" else _schema(constraint)
        if mode == "raw":
            payload.update(prompt=messages[-1].content, raw=True)
            return "/api/generate", payload
        payload["messages"] = _wire_messages(messages)
        return "/api/chat", payload

    def parse(self, line: str, run: _Run) -> str:
        line = line.strip()
        if not line:
            return ""
        try:
            event = json.loads(line)
        except ValueError:
            return ""
        if not isinstance(event, dict):
            return ""
        prof = self.target.profile
        if event.get("error"):
            raise RemoteError(f"{prof.name}: {prof.host} stopped the reply: {event['error']}")
        message = event.get("message")
        text = message.get("content") if isinstance(message, dict) else event.get("response")
        if event.get("done"):
            counts = [event.get(k) for k in ("prompt_eval_count", "eval_count",
                                              "prompt_eval_duration", "eval_duration")]
            prompt_n, new_n, prompt_ns, eval_ns = (c if isinstance(c, int) else None
                                                   for c in counts)
            if prompt_n is not None:
                run.prompt_tokens = prompt_n
                if prompt_ns:
                    run.prefill_tps = prompt_n / (prompt_ns / 1e9)
            if new_n is not None:
                run.new_tokens = new_n
                if eval_ns:
                    run.decode_tps = new_n / (eval_ns / 1e9)
            run.finish = _finish(event.get("done_reason"))
        return text if isinstance(text, str) else ""


RUNTIME = RemoteRuntime()
