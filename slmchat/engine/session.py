"""Engine: the one object the app and the CLI talk to.

Holds the loaded model, swaps it safely (a failed load keeps the current model), builds
prompts within the context budget, and streams replies while reusing the KV cache of
the previous turn when the new prompt extends it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace

from slmchat.engine.generate import (
    CancelToken,
    GenerationChunk,
    PromptCache,
    SamplingParams,
    stream_generate,
)
from slmchat.engine.models import LoadedModel, ModelInfo, ModelSpec, load
from slmchat.engine.prompting import ChatMessage, Prompt, PromptMode, build_prompt
from slmchat.errors import SlmChatError


class NoModelError(SlmChatError):
    """Generation was asked for before any model finished loading."""


class Engine:
    """Thread-safe holder of the current model. One generation at a time."""

    def __init__(self, loaded: LoadedModel | None = None, lite: bool = False) -> None:
        self._loaded = loaded
        self._lite = lite  # generation-only engines (CLI) may skip transformers
        self._lock = threading.RLock()
        self._cache = PromptCache()

    @property
    def loaded(self) -> LoadedModel | None:
        return self._loaded

    @property
    def info(self) -> ModelInfo | None:
        return self._loaded.info if self._loaded else None

    def load(self, spec: ModelSpec) -> ModelInfo:
        """Load ``spec`` and make it current. On error the previous model stays."""
        new = load(spec, lite=self._lite)  # raises ModelLoadError; nothing changed yet
        with self._lock:
            self._loaded = new
            self._cache.reset()
        return new.info

    def unload(self) -> None:
        with self._lock:
            self._loaded = None
            self._cache.reset()

    def _require(self) -> LoadedModel:
        if self._loaded is None:
            raise NoModelError("no model is loaded yet")
        return self._loaded

    def count_tokens(self, text: str) -> int:
        return len(self._require().tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt(
        self, messages: Sequence[ChatMessage], params: SamplingParams,
        mode: PromptMode = "chat", continue_last: bool = False,
    ) -> Prompt:
        lm = self._require()
        return build_prompt(
            lm.tokenizer, messages, lm.info.context_length, params.max_new_tokens,
            mode=mode, continue_last=continue_last,
        )

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        params: SamplingParams,
        cancel: CancelToken | None = None,
        mode: PromptMode = "chat",
        continue_last: bool = False,
    ) -> Iterator[GenerationChunk]:
        """Stream the assistant reply to ``messages`` (system message first, if any)."""
        from slmchat.engine.devices import chat_threads

        with self._lock:
            lm = self._require()
            if lm.info.device == "cpu":
                chat_threads()
            prompt = self.prompt(messages, params, mode, continue_last)
            if prompt.stop:
                params = replace(params, stop=tuple(params.stop) + prompt.stop)
            yield from stream_generate(
                lm.model, lm.tokenizer, prompt.input_ids, params, cancel, self._cache,
                runner_kind=lm.spec.runner,
            )
