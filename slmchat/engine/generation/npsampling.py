"""The logits processors of sampling.py in numpy, for runtimes that must not import torch.

The ONNX runtime hands back logits as numpy arrays, and a chat on it must start without
torch (seconds of import on a small CPU). Each function follows its torch twin in
sampling.py op for op (same order, same keep/remove rules, float32 throughout);
tests/engine/generation/test_npsampling.py compares them on random logits. Seeds give
the same reply again on the same runtime; numpy's and torch's random streams differ, so
a seed does not give the same sampled reply across runtimes (greedy does).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from slmchat.engine.generation.sampling import SamplingParams

_NEG_INF = np.float32(-np.inf)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def repetition_penalty(ids: np.ndarray, scores: np.ndarray, penalty: float) -> np.ndarray:
    """``ids``: 1-D token ids seen so far (duplicates allowed); ``scores``: (1, vocab)."""
    vocab = scores.shape[-1]
    ids = np.unique(ids[ids < vocab])
    out = scores.copy()
    picked = out[0, ids]
    out[0, ids] = np.where(picked < 0, picked * np.float32(penalty), picked / np.float32(penalty))
    return out


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(max(k, 1), scores.shape[-1])
    kth = np.partition(scores, -k, axis=-1)[..., -k, None]
    return np.where(scores < kth, _NEG_INF, scores)


def top_p(scores: np.ndarray, p: float) -> np.ndarray:
    order = np.argsort(scores, axis=-1, kind="stable")  # ascending, as torch.sort
    sorted_logits = np.take_along_axis(scores, order, axis=-1)
    cumulative = np.cumsum(_softmax(sorted_logits), axis=-1)
    sorted_remove = cumulative <= (1 - p)
    sorted_remove[..., -1:] = False
    remove = np.zeros_like(sorted_remove)
    np.put_along_axis(remove, order, sorted_remove, axis=-1)
    return np.where(remove, _NEG_INF, scores)


def min_p(scores: np.ndarray, p: float) -> np.ndarray:
    probs = _softmax(scores)
    remove = probs < np.float32(p) * probs.max(axis=-1, keepdims=True)
    np.put_along_axis(remove, probs.argmax(axis=-1)[..., None], False, axis=-1)
    return np.where(remove, _NEG_INF, scores)


def process(ids: np.ndarray, scores: np.ndarray, params: SamplingParams) -> np.ndarray:
    """Apply the processors in transformers' order (sampling.process, in numpy)."""
    scores = scores.astype(np.float32, copy=False)
    if params.repetition_penalty != 1.0:
        scores = repetition_penalty(ids, scores, params.repetition_penalty)
    if params.temperature > 0:
        scores = scores / np.float32(params.temperature)
        if params.top_k > 0:
            scores = top_k(scores, params.top_k)
        if params.top_p < 1.0:
            scores = _top_p_fast(scores, params.top_p) if params.top_k > 0 else top_p(scores, params.top_p)
        if params.min_p > 0:
            scores = min_p(scores, params.min_p)
    return scores


def _top_p_fast(scores: np.ndarray, p: float) -> np.ndarray:
    """top_p after top_k: only the finite scores can survive, so sort those alone.

    The same result as top_p (masked scores have probability 0 and sit at the front of
    the ascending sort, where they are removed anyway) at a fraction of the cost of
    sorting the whole vocabulary on every token.
    """
    keep = np.flatnonzero(np.isfinite(scores[0]))
    sub = top_p(scores[:, keep], p)
    out = np.full_like(scores, _NEG_INF)
    out[0, keep] = sub[0]
    return out


class NumpySampler:
    """Token choice on numpy logits: the history for the repetition penalty, the seeded
    random stream, greedy or multinomial sampling."""

    def __init__(self, prompt: Sequence[int], params: SamplingParams, seed: int) -> None:
        self.params = params
        self._rng = np.random.default_rng(seed)
        self._ids = np.empty(len(prompt) + params.max_new_tokens, dtype=np.int64)
        self._ids[: len(prompt)] = prompt
        self._n = len(prompt)

    def append(self, token: int) -> None:
        self._ids[self._n] = token
        self._n += 1

    def pick(self, logits: np.ndarray) -> int:
        scores = process(self._ids[: self._n], logits.reshape(1, -1), self.params)
        if self.params.temperature > 0:
            probs = _softmax(scores.astype(np.float64))[0]
            cdf = np.cumsum(probs)
            return int(min(np.searchsorted(cdf, self._rng.random() * cdf[-1], side="right"),
                           len(cdf) - 1))
        return int(np.argmax(scores[0]))
