"""Engine: the one object the app, the CLI and (later) the server talk to.

Holds the loaded model, swaps it safely (a failed load keeps the current model), builds
prompts within the context budget, and streams replies while reusing the KV cache of
the previous turn when the new prompt extends it. ``EngineLike`` is the Protocol the
app is written against; tests/tui/fakes.FakeEngine implements it too, and mypy checks
both.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Protocol

from slmchat.engine import runtimes
from slmchat.engine.devices import BusyCores
from slmchat.engine.generation import reasoning
from slmchat.engine.generation.constraints import Constraint
from slmchat.engine.generation.decode import CancelToken, GenerationChunk, PromptCache, stream_backend
from slmchat.engine.generation.prompting import (
    ChatMessage,
    Prompt,
    PromptMode,
    build_prompt,
    shared_prefix,
)
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.generation.speculative import (
    Drafter,
    DraftModelDrafter,
    LookupDrafter,
    PredictionDrafter,
    Speculation,
    same_vocabulary,
)
from slmchat.engine.model.memcheck import room_for
from slmchat.engine.model.spec import LoadedModel, ModelInfo, ModelSpec, Progress
from slmchat.errors import ModelLoadError, SlmChatError


class NoModelError(SlmChatError):
    """Generation was asked for before any model finished loading."""


class EngineLike(Protocol):
    """What the app and the CLI need from an engine."""

    @property
    def info(self) -> ModelInfo | None: ...

    def load(self, spec: ModelSpec, progress: Progress | None = None) -> ModelInfo: ...

    def preview_prompt(
        self, messages: Sequence[ChatMessage], params: SamplingParams,
        mode: PromptMode = "chat", continue_last: bool = False, detail: bool = False,
        thinking: bool | None = None,
    ) -> Prompt: ...

    def stream_chat(
        self, messages: Sequence[ChatMessage], params: SamplingParams,
        cancel: CancelToken | None = None, mode: PromptMode = "chat",
        continue_last: bool = False, constraint: Constraint | None = None,
        reuse_cache: bool = True, thinking: bool | None = None,
        prediction: str | None = None,
    ) -> Iterator[GenerationChunk]: ...

    def cancel(self) -> None: ...

    def companion(self, spec: ModelSpec | None = None) -> EngineLike: ...


class TrainingWatch:
    """Whether a fine-tune runs beside chat, checked at most every ``ttl_s`` seconds
    (a reply must not scan the run folders on every turn)."""

    def __init__(self, count: Callable[[], int] | None = None, ttl_s: float = 15.0) -> None:
        self._count = count or _running_finetunes
        self._ttl = ttl_s
        self._at = -float("inf")
        self._value = False

    def active(self) -> bool:
        now = time.monotonic()
        if now - self._at >= self._ttl:
            try:
                self._value = self._count() > 0
            except Exception:  # a half-written run folder must never break chatting
                self._value = False
            self._at = now
        return self._value


def _running_finetunes() -> int:
    from slmchat.engine.finetune.rundir import running_count

    return running_count()


def _with_reasoning(chunks: Iterator[GenerationChunk], tokenizer: object, prompt_text: str,
                    continued: str | None) -> Iterator[GenerationChunk]:
    """The reply with its reasoning block apart, in the markers the chat template uses;
    it starts inside the block when the prompt (or the reply being continued) opened one."""
    markers = reasoning.markers_in(reasoning.template_source(tokenizer))
    inside = reasoning.opens_inside(prompt_text, markers, continued)
    return reasoning.separate(chunks, markers, inside)


class Engine:
    """Thread-safe holder of the current model. One generation at a time."""

    def __init__(self, loaded: LoadedModel | None = None, lite: bool = False,
                 training: TrainingWatch | None = None,
                 speculation: Speculation | None = None) -> None:
        self._loaded = loaded
        # ``--speculative`` / settings.generation.speculative (speculative.py)
        self.speculation = speculation or Speculation()
        self._draft: LoadedModel | None = None  # the draft model of ``draft`` speculation
        self._lite = lite  # generation-only engines (CLI) may skip transformers
        self._lock = threading.RLock()
        self._cache = PromptCache()
        self._training = training or TrainingWatch()
        self._current: CancelToken | None = None
        self._busy = BusyCores()  # the CPU runtimes' threads follow the free cores

    @property
    def loaded(self) -> LoadedModel | None:
        return self._loaded

    @property
    def info(self) -> ModelInfo | None:
        return self._loaded.info if self._loaded else None

    def load(self, spec: ModelSpec, progress: Progress | None = None) -> ModelInfo:
        """Load ``spec`` and make it current. On error the previous model stays.

        The runtime is engine/runtimes' choice for ``spec`` (a first ONNX use converts the
        model once, reporting through ``progress``)."""
        new = runtimes.load(spec, lite=self._lite, progress=progress)  # nothing changed yet
        switch = reasoning.has_switch(reasoning.template_source(new.tokenizer))
        if switch != new.info.thinking_switch:
            new = replace(new, info=replace(new.info, thinking_switch=switch))
        draft, note = self._load_draft(new)
        if note:
            new = replace(new, info=replace(new.info, warnings=(*new.info.warnings, note)))
        with self._lock:
            self._loaded, self._draft = new, draft
            self._cache.reset()
            self._busy.prime()
        return new.info

    def _load_draft(self, lm: LoadedModel) -> tuple[LoadedModel | None, str | None]:
        """The draft model ``draft`` speculation asks for beside ``lm`` (default: the
        embedded model, which shares its tokenizer with the SmolLM2 family), or None and
        the one-line reason prompt lookup is used instead: not enough memory (checked
        before it loads), a load error, another vocabulary, or a draft larger than the model."""
        if self.speculation.mode != "draft" or runtimes.conversation(lm.info) is not None:
            return None, None  # a remote server decodes on its own side
        path = self.speculation.draft_model or "default"
        spec = ModelSpec(path=path, device="cpu")
        fallback = "; speculative decoding uses prompt lookup instead"
        if path == lm.spec.path:
            return None, f"the draft model is the loaded model{fallback}"
        problem = room_for(spec, beside=lm.info.name)
        if problem:
            return None, f"no room for the draft model: {problem}{fallback}"
        try:
            draft = runtimes.load(spec, lite=self._lite)
        except ModelLoadError as exc:
            return None, f"the draft model does not load: {exc}{fallback}"
        why = same_vocabulary(lm.tokenizer, draft.tokenizer)
        if why is None and draft.info.n_params > lm.info.n_params > 0:
            why = "it is larger than the loaded model"
        if why:
            return None, f"{draft.info.name} cannot draft for {lm.info.name}: {why}{fallback}"
        return draft, None

    def unload(self) -> None:
        with self._lock:
            self._loaded = self._draft = None
            self._cache.reset()

    def _require(self) -> LoadedModel:
        if self._loaded is None:
            raise NoModelError("no model is loaded yet")
        return self._loaded

    def preview_prompt(
        self, messages: Sequence[ChatMessage], params: SamplingParams,
        mode: PromptMode = "chat", continue_last: bool = False, detail: bool = False,
        thinking: bool | None = None,
    ) -> Prompt:
        """The exact prompt (text, token ids, stop strings) a reply would be given, and
        how many of its leading tokens the KV cache of the last turn already holds.
        ``detail``: per-message token counts and token texts (the prompt inspector).
        ``thinking``: ``enable_thinking`` where the template has it (None: its default)."""
        lm = self._require()
        talker = runtimes.conversation(lm.info)
        if talker is not None:  # a remote server applies its own template to the messages
            return talker.preview(lm, messages, params, mode, continue_last, detail)
        prompt = build_prompt(
            lm.tokenizer, messages, lm.info.context_length, params.max_new_tokens,
            mode=mode, continue_last=continue_last, detail=detail, thinking=thinking,
        )
        cached = shared_prefix(list(self._cache.tokens), prompt.input_ids)
        return replace(prompt, cached_tokens=cached) if cached else prompt

    def cancel(self) -> None:
        """Stop the reply being generated now, if any, at its next token."""
        token = self._current
        if token is not None:
            token.cancel()

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        params: SamplingParams,
        cancel: CancelToken | None = None,
        mode: PromptMode = "chat",
        continue_last: bool = False,
        constraint: Constraint | None = None,
        reuse_cache: bool = True,
        thinking: bool | None = None,
        prediction: str | None = None,
    ) -> Iterator[GenerationChunk]:
        """Stream the assistant reply to ``messages`` (system message first, if any);
        ``constraint``: the reply follows it (generation/constraints.py); ``prediction``:
        the caller's guess of the reply, the draft for speculative decoding wherever the
        runtime can verify drafts, unless speculation is off (PredictionDrafter).

        A chat reply's reasoning block comes in the chunks' ``reasoning``, apart from the
        answer in ``text`` (generation/reasoning.py, markers from the chat template);
        ``thinking`` is ``enable_thinking`` for a template with that switch (None: the
        template's default). Raw completions and constrained replies are left whole.

        ``reuse_cache`` False: the KV cache of the previous turn is dropped first, so the
        whole prompt is prefilled and the reply is exactly a fresh engine's (a reused
        prefix can change a near-tie greedy token: chunked prefill and a cached prefix
        do not give bit-identical logits). The last chunk's ``warning`` carries the
        runtime's word on a reply with no text or an error (Runtime.after_empty_reply)."""
        cancel = cancel or CancelToken()
        with self._lock:
            lm = self._require()
            talker = runtimes.conversation(lm.info)
            if talker is not None:
                yield from self._stream_messages(talker, lm, messages, params, cancel, mode,
                                                 continue_last, constraint)
                return
            runtime = runtimes.runtime_of(lm.info)
            runtime.fit_threads(lm, self._busy, self._training.active())
            if not reuse_cache:
                self._cache.reset()
            prompt = self.preview_prompt(messages, params, mode, continue_last,
                                         thinking=thinking)
            if prompt.stop:
                params = replace(params, stop=tuple(params.stop) + prompt.stop)
            self._current = cancel
            try:
                said = False  # any text at all (a damaged copy's tokens may decode to none)
                chunks = stream_backend(runtime.backend(lm), lm.tokenizer, prompt.input_ids,
                                        params, cancel, self._cache, constraint,
                                        self._drafter(runtime, lm, prediction,
                                                      len(prompt.input_ids)))
                if mode == "chat" and constraint is None:
                    chunks = _with_reasoning(chunks, lm.tokenizer, prompt.text,
                                             messages[-1].content if continue_last else None)
                for chunk in chunks:
                    said = said or bool(chunk.text or chunk.reasoning)
                    if chunk.finish_reason == "error" or (
                            chunk.finish_reason in ("stop", "length") and not said):
                        note = runtime.after_empty_reply(lm)
                        if note:
                            chunk = replace(chunk, warning=note)
                    yield chunk
            finally:
                self._current = None

    def _stream_messages(self, talker: runtimes.Conversation, lm: LoadedModel,
                         messages: Sequence[ChatMessage], params: SamplingParams,
                         cancel: CancelToken, mode: PromptMode, continue_last: bool,
                         constraint: Constraint | None) -> Iterator[GenerationChunk]:
        """A conversation-level runtime's reply (no prompt, no KV cache here)."""
        self._current = cancel
        try:
            yield from talker.stream(lm, messages, params, cancel, mode, continue_last,
                                     constraint)
        finally:
            self._current = None

    def _drafter(self, runtime: runtimes.Runtime, lm: LoadedModel,
                 prediction: str | None = None, prompt_tokens: int = 0) -> Drafter | None:
        """The drafter ``self.speculation`` asks for on ``runtime`` (None: plain decoding).
        ``auto`` uses prompt lookup where the runtime verifies drafts exactly and faster;
        the decode loop also drops it when the state cannot score several tokens. A
        caller's ``prediction`` is its own request for speculation: it drafts on every
        runtime that can verify, whatever ``auto`` would choose, unless speculation is off."""
        mode = self.speculation.mode
        if prediction and mode != "off":
            guess = lm.tokenizer(prediction, add_special_tokens=False)["input_ids"]
            return PredictionDrafter(list(guess), prompt_tokens)
        if mode == "draft" and self._draft is not None:
            draft = runtimes.runtime_of(self._draft.info)
            draft.fit_threads(self._draft, self._busy, self._training.active())
            return DraftModelDrafter(draft.backend(self._draft))
        if mode in ("lookup", "draft") or (mode == "auto" and runtime.speculates(lm)):
            return LookupDrafter([])
        return None

    def companion(self, spec: ModelSpec | None = None) -> Engine:
        """A second engine for side-by-side replies, with its own KV cache.

        ``spec`` None (or the spec loaded here): it shares this engine's weights, for
        the same model with other settings. Otherwise ``spec`` is loaded beside this
        model after a memory check; ModelLoadError (one line) when it would not fit or
        does not load. With no model loaded here, ``spec`` just loads on its own.
        Dropping the companion frees its model."""
        other = Engine(lite=self._lite, training=self._training, speculation=self.speculation)
        if self._loaded is None and spec is not None:
            other.load(spec)
            return other
        lm = self._require()
        if (spec is None or spec == lm.spec) and not runtimes.runtime_of(lm.info).shares_weights:
            other.load(lm.spec)  # its own context (llama.cpp maps the same file: pages shared)
            return other
        if spec is None or spec == lm.spec:
            # The same weights with an own KV cache and an own tokenizer: the two sides
            # may run in two threads, and a fast tokenizer is not made for two at once.
            try:
                other._loaded = replace(lm, tokenizer=copy.deepcopy(lm.tokenizer))
            except Exception:  # a tokenizer that cannot be copied: share it
                other._loaded = replace(lm)
            return other
        # A remote model takes no memory here: only a local one is checked.
        problem = None if runtimes.is_remote_spec(spec) else room_for(spec, beside=lm.info.name)
        if problem:
            raise ModelLoadError(problem)
        other.load(spec)
        return other
