"""Engines for server tests: an echo engine (no model), a wrapper that counts tokens
produced after a cancel, and one that notes each generation's thinking switch.

Each implements ``EngineLike``, as the server requires: mypy checks this file
(pyproject.toml ``[tool.mypy] files``) and ``_as_engine`` below fails when one drifts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from slmchat.engine.generation.constraints import Constraint
from slmchat.engine.generation.decode import CancelToken, GenerationChunk
from slmchat.engine.generation.prompting import ChatMessage, Prompt, PromptMode
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model.spec import ModelInfo, ModelSpec, Progress
from slmchat.engine.session import EngineLike
from slmchat.errors import ModelLoadError
from tests.tui.fakes import fake_info


def echo_words(text: str, n: int) -> list[str]:
    """What EchoEngine answers to ``text``: its words, numbered, cycled to ``n`` pieces."""
    words = text.split() or ["empty"]
    return [f" {words[i % len(words)]}#{i}" for i in range(n)]


@dataclass
class EchoEngine:
    """Streams the last user message back word by word, ``delay_s`` per token.

    Records how many generations ran at once (the server must allow one) and the order in
    which they started."""

    delay_s: float = 0.005
    reply_tokens: int = 12
    context_length: int = 2048
    started: list[str] = field(default_factory=list)
    reuse: list[bool] = field(default_factory=list)  # each generation's reuse_cache
    max_active: int = 0
    gate: threading.Event | None = None  # when set: each generation waits for it first
    refuse: tuple[str, ...] = ()  # load() of these paths fails, as a broken model's does
    _active: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _info: ModelInfo = field(default_factory=lambda: fake_info("echo", "/models/echo"))

    @property
    def info(self) -> ModelInfo | None:
        return self._info

    def load(self, spec: ModelSpec, progress: Progress | None = None) -> ModelInfo:
        if spec.path in self.refuse:
            raise ModelLoadError(f"cannot load {spec.path}: the weights are damaged")
        self._info = fake_info(spec.path.rsplit("/", 1)[-1], spec.path)
        return self._info

    def companion(self, spec: ModelSpec | None = None) -> EchoEngine:
        """Another echo engine beside this one (the model ``spec`` names, or this one's)."""
        other = EchoEngine(delay_s=self.delay_s, reply_tokens=self.reply_tokens,
                           context_length=self.context_length, _info=self._info)
        if spec is not None:
            other.load(spec)
        return other

    def preview_prompt(self, messages: Sequence[ChatMessage], params: SamplingParams,
                       mode: PromptMode = "chat", continue_last: bool = False,
                       detail: bool = False, thinking: bool | None = None) -> Prompt:
        text = "\n".join(m.content for m in messages)
        ids = list(range(len(text.split()) + 3))
        return Prompt(input_ids=ids, text=text, prompt_tokens=len(ids),
                      context_length=self.context_length, dropped_messages=0, truncated=False,
                      stop=(), format="template")

    def cancel(self) -> None:  # the server cancels through its own tokens
        pass

    def stream_chat(self, messages: Sequence[ChatMessage], params: SamplingParams,
                    cancel: CancelToken | None = None, mode: PromptMode = "chat",
                    continue_last: bool = False, constraint: Constraint | None = None,
                    reuse_cache: bool = True, thinking: bool | None = None,
                    prediction: str | None = None,
                    ) -> Iterator[GenerationChunk]:
        cancel = cancel or CancelToken()
        last_user = next(m.content for m in reversed(messages) if m.role == "user")
        with self._lock:
            self._active += 1
            self.max_active = max(self.max_active, self._active)
            self.started.append(last_user)
            self.reuse.append(reuse_cache)
        try:
            if self.gate is not None:
                while not self.gate.wait(0.01):
                    if cancel.cancelled:
                        break
            n = min(self.reply_tokens, params.max_new_tokens)
            prompt = len(self.preview_prompt(messages, params).input_ids)

            def chunk(text: str, new: int, reason: str | None = None) -> GenerationChunk:
                return GenerationChunk(text=text, new_tokens=new, prompt_tokens=prompt,
                                       ttft_s=0.01, prefill_tps=100.0, decode_tps=50.0,
                                       seed=params.seed or 0, finish_reason=reason)  # type: ignore[arg-type]

            for i, word in enumerate(echo_words(last_user, n)):
                if cancel.cancelled:
                    yield chunk("", i, "cancelled")
                    return
                time.sleep(self.delay_s)
                yield chunk(word, i + 1)
            yield chunk("", n, "length" if n == params.max_new_tokens else "stop")
        finally:
            with self._lock:
                self._active -= 1


@dataclass
class Wrapping:
    """A real engine behind a test's wrapper: everything but ``companion`` and
    ``stream_chat`` (which each wrapper defines) goes to ``inner`` unchanged."""

    inner: EngineLike

    @property
    def info(self) -> ModelInfo | None:
        return self.inner.info

    def load(self, spec: ModelSpec, progress: Progress | None = None) -> ModelInfo:
        return self.inner.load(spec, progress)

    def preview_prompt(self, messages: Sequence[ChatMessage], params: SamplingParams,
                       mode: PromptMode = "chat", continue_last: bool = False,
                       detail: bool = False, thinking: bool | None = None) -> Prompt:
        return self.inner.preview_prompt(messages, params, mode, continue_last, detail=detail,
                                         thinking=thinking)

    def cancel(self) -> None:
        self.inner.cancel()


@dataclass
class CountingEngine(Wrapping):
    """Wraps a real engine: counts tokens yielded after the request's cancel was set, and
    slows each token by ``delay_s`` so a client can leave mid-reply."""

    delay_s: float = 0.02
    after_cancel: list[int] = field(default_factory=list)  # per generation
    finishes: list[str | None] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def companion(self, spec: ModelSpec | None = None) -> CountingEngine:
        return CountingEngine(self.inner.companion(spec), delay_s=self.delay_s)

    def stream_chat(self, messages: Sequence[ChatMessage], params: SamplingParams,
                    cancel: CancelToken | None = None, mode: PromptMode = "chat",
                    continue_last: bool = False, constraint: Constraint | None = None,
                    reuse_cache: bool = True, thinking: bool | None = None,
                    prediction: str | None = None,
                    ) -> Iterator[GenerationChunk]:
        cancel = cancel or CancelToken()
        late = 0
        last = None
        try:
            for last in self.inner.stream_chat(messages, params, cancel, mode, continue_last,
                                               constraint, reuse_cache, thinking):
                if cancel.cancelled and last.text:
                    late += 1
                yield last
                time.sleep(self.delay_s)
        finally:
            self.after_cancel.append(late)
            self.finishes.append(last.finish_reason if last else None)
            self.done.set()


@dataclass
class Recording(Wrapping):
    """Wraps a real engine, noting the ``thinking`` each generation was given."""

    thinking: list[bool | None] = field(default_factory=list)

    def companion(self, spec: ModelSpec | None = None) -> Recording:
        return Recording(self.inner.companion(spec))

    def stream_chat(self, messages: Sequence[ChatMessage], params: SamplingParams,
                    cancel: CancelToken | None = None, mode: PromptMode = "chat",
                    continue_last: bool = False, constraint: Constraint | None = None,
                    reuse_cache: bool = True, thinking: bool | None = None,
                    prediction: str | None = None,
                    ) -> Iterator[GenerationChunk]:
        self.thinking.append(thinking)
        return self.inner.stream_chat(messages, params, cancel, mode, continue_last,
                                      constraint, reuse_cache, thinking, prediction)


def _as_engine(a: EchoEngine, b: CountingEngine, c: Recording) -> tuple[Any, ...]:
    """mypy: each fake is an EngineLike (an error here names the one that drifted)."""
    engines: tuple[EngineLike, EngineLike, EngineLike] = (a, b, c)
    return engines
