"""The llamacpp backend: llama.cpp's context (llama-cpp-python) driven one token at a time.

We own the loop (decode.py), as on the onnx backend: ``extend`` decodes the new tokens in
batches of ``n_batch`` and reads the last position's logits straight from llama.cpp's
buffer (a view, copied once into numpy), sampled by npsampling, so our sampling rules,
stop strings, cancel and provenance are the same on every runtime. The KV cache stays in
the llama.cpp context across turns; ``rewind`` drops the cells past ``n``
(``llama_memory_seq_rm``), which is what an edited or regenerated turn needs.

No torch on this path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from slmchat.engine.generation.backends.base import ContextFull, config_stop_ids
from slmchat.engine.generation.npsampling import NumpySampler
from slmchat.engine.generation.sampling import SamplingParams


class LlamaCppState:
    """The one sequence a llama.cpp context holds. Two states of one model would share
    the context's KV cells, so a model hands out one state at a time (the engine keeps
    it between turns); a companion engine loads its own context."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self._llama = model.llama
        model.claim(self)
        self.tokens: list[int] = []

    def _mine(self) -> bool:
        return self._model.owner is self

    def reserve(self, total: int) -> None:
        if not self._mine():  # another state used the context since: start over
            self._model.claim(self)
            self._clear()

    def _clear(self) -> None:
        self._llama._ctx.kv_cache_seq_rm(-1, 0, -1)
        self._llama.n_tokens = 0
        self.tokens = []

    def extend(self, ids: Sequence[int]) -> np.ndarray:
        llama = self._llama
        if len(self.tokens) + len(ids) > llama.n_ctx():
            raise ContextFull
        if not self._mine():  # another state used the context since: feed ours again
            kept = list(self.tokens)
            self.reserve(len(kept) + len(ids))
            ids = [*kept, *ids]
        llama.n_tokens = len(self.tokens)
        llama.eval([int(t) for t in ids])  # removes cells past n_tokens, then decodes
        self.tokens.extend(int(t) for t in ids)
        ptr = self._model.lib.llama_get_logits_ith(llama._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(1, self._model.n_vocab)).copy()

    @property
    def verifies(self) -> bool:
        return True  # a batch may ask for logits at every position

    def score(self, ids: Sequence[int]) -> np.ndarray:
        """One ``llama_decode`` over ``ids`` with an output row per position (the batch's
        logits flags), for speculative verification; rows copied out of llama.cpp's
        buffer in batch order."""
        llama = self._llama
        if len(self.tokens) + len(ids) > llama.n_ctx():
            raise ContextFull
        if not self._mine():  # another state used the context since: feed ours first
            kept = list(self.tokens)
            self.reserve(len(kept) + len(ids))
            if kept:
                self.extend(kept)
        n = len(self.tokens)
        batch = [int(t) for t in ids]
        llama._ctx.kv_cache_seq_rm(-1, n, -1)  # cells of rejected drafts, if any are left
        llama._batch.set_batch(batch=batch, n_past=n, logits_all=True)
        llama._ctx.decode(llama._batch)
        llama.input_ids[n:n + len(batch)] = batch
        llama.n_tokens = n + len(batch)
        self.tokens.extend(batch)
        ptr = self._model.lib.llama_get_logits(llama._ctx.ctx)
        return np.ctypeslib.as_array(ptr, shape=(len(batch), self._model.n_vocab)).copy()

    def rewind(self, n: int) -> int:
        if n >= len(self.tokens):
            return len(self.tokens)
        if n <= 0 or not self._mine():
            self.reset()
            return 0
        if not self._llama._ctx.kv_cache_seq_rm(-1, n, -1):
            self.reset()
            return 0
        self._llama.n_tokens = n
        del self.tokens[n:]
        return n

    def reset(self) -> None:
        if self._mine():
            self._clear()
        self.tokens = []

    def close(self) -> None:
        self.reset()
        self._model.release(self)


class LlamaCppBackend:
    runtime = "llamacpp"

    def __init__(self, model: Any) -> None:
        self.model = model

    @property
    def key(self) -> int:
        return id(self.model)

    def new_state(self) -> LlamaCppState:
        return LlamaCppState(self.model)

    def sampler(self, prompt: Sequence[int], params: SamplingParams, seed: int) -> NumpySampler:
        return NumpySampler(prompt, params, seed)

    def stop_ids(self, tokenizer: Any) -> set[int]:
        return config_stop_ids(self.model, tokenizer) | set(self.model.end_ids)
