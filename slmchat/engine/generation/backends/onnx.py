"""The onnx backend: ONNX Runtime GenAI's generator driven one step at a time.

We own the loop (the decode loop in decode.py): ``append_tokens`` feeds the prompt, then
each sampled token; ``get_logits`` returns the next-token logits as numpy, sampled by
npsampling (no torch anywhere on this path). The generator keeps the KV cache across
turns; ``rewind_to`` truncates it when a turn is edited or regenerated.

Memory: the copy is built with last-token logits only, so a long prefill never holds a
row of logits per prompt position, and the prompt goes in chunks so the activations of
one forward stay bounded. The generator's KV buffer is allocated whole for ``max_length``
tokens, so it is sized to the conversation (the next power of two that holds prompt and
reply, at least MIN_CAPACITY) and grown, by re-feeding the kept tokens, when a later turn
needs more; never the model's full context by default.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slmchat.engine.generation.backends.base import ContextFull, config_stop_ids
from slmchat.engine.generation.npsampling import NumpySampler
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model.onnx import MARKER

MIN_CAPACITY = 1024
PREFILL_CHUNK = 512


def capacity_for(total: int, context: int) -> int:
    cap = MIN_CAPACITY
    while cap < total:
        cap *= 2
    return max(1, min(cap, context))


class OnnxState:
    def __init__(self, model: Any) -> None:
        self._model = model
        self._gen: Any = None
        self._gen_of = -1  # model.generation the generator was made for
        self.capacity = 0
        self.tokens: list[int] = []

    def _new_generator(self, capacity: int) -> None:
        from slmchat.engine.model.onnx_capi import Generator

        self._gen = Generator(self._model.og, capacity)
        self._gen_of = self._model.generation
        self.capacity = capacity

    def _stale(self) -> bool:
        return self._gen is None or self._gen_of != self._model.generation

    def reserve(self, total: int) -> None:
        total = min(total, self._model.context_length)  # extend() fails past the context
        if not self._stale() and total <= self.capacity:
            return
        kept = list(self.tokens)
        self._gen = None
        self._new_generator(capacity_for(max(total, len(kept)), self._model.context_length))
        self.tokens = []
        if kept:  # a bigger buffer (or a reloaded model): feed the kept prefix again
            self._append(kept)

    def _append(self, ids: Sequence[int]) -> None:
        for i in range(0, len(ids), PREFILL_CHUNK):
            chunk = [int(t) for t in ids[i:i + PREFILL_CHUNK]]
            self._gen.append_tokens(chunk)
            self.tokens.extend(chunk)

    def extend(self, ids: Sequence[int]) -> np.ndarray:
        if len(self.tokens) + len(ids) > self._model.context_length:
            raise ContextFull
        self.reserve(len(self.tokens) + len(ids))
        self._append(ids)
        return np.asarray(self._gen.get_logits(), dtype=np.float32).reshape(1, -1)

    @property
    def verifies(self) -> bool:
        return full_logits(self._model)

    def score(self, ids: Sequence[int]) -> np.ndarray:
        """Feed ``ids`` and return a row of logits per position: only a copy built with
        full logits (``last_token_logits`` false in its marker) has them."""
        if len(self.tokens) + len(ids) > self._model.context_length:
            raise ContextFull
        self.reserve(len(self.tokens) + len(ids))
        self._append(ids)
        out = np.asarray(self._gen.get_output("logits"), dtype=np.float32)
        return out.reshape(-1, out.shape[-1])[-len(ids):]

    def rewind(self, n: int) -> int:
        if n >= len(self.tokens):
            return len(self.tokens)
        if n <= 0 or self._stale():
            self.reset()
            return 0
        self._gen.rewind_to(n)
        del self.tokens[n:]
        return n

    def reset(self) -> None:
        if self._gen is not None and not self._stale() and self.tokens:
            self._gen.rewind_to(0)  # keep the buffer; a new generator would allocate again
        self.tokens = []

    def close(self) -> None:
        self._gen, self.tokens, self.capacity = None, [], 0


def full_logits(model: Any) -> bool:
    """Whether the copy's graph returns logits for every position (built with
    ``full_logits``; the default copies prune the LM head to the last position)."""
    known = getattr(model, "_slmchat_full_logits", None)
    if known is None:
        try:
            meta = json.loads((Path(model.folder) / MARKER).read_text())
            known = meta.get("last_token_logits") is False
        except (OSError, ValueError, AttributeError, TypeError):
            known = False
        with contextlib.suppress(AttributeError):
            model._slmchat_full_logits = known
    return bool(known)


class OnnxBackend:
    runtime = "onnx"

    def __init__(self, model: Any) -> None:
        self.model = model

    @property
    def key(self) -> int:
        return id(self.model)

    def new_state(self) -> OnnxState:
        return OnnxState(self.model)

    def sampler(self, prompt: Sequence[int], params: SamplingParams, seed: int) -> NumpySampler:
        return NumpySampler(prompt, params, seed)

    def stop_ids(self, tokenizer: Any) -> set[int]:
        return config_stop_ids(self.model, tokenizer)
