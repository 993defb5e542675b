"""Perplexity of a model on a text file, with a sliding window.

The text is tokenized once; windows of ``window`` tokens advance by ``stride`` and only
the tokens not already scored by the previous window count (the Hugging Face recipe),
so each token is predicted with up to ``window - stride`` tokens of left context and
the result does not depend on where the windows happen to split.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmchat.engine.fsutil import read_text_file
from slmchat.errors import DataError, InvalidParameterError


@dataclass(frozen=True)
class EvalResult:
    perplexity: float
    tokens: int
    nll: float
    seconds: float

    @property
    def line(self) -> str:
        return f"perplexity={self.perplexity:.4f} tokens={self.tokens}"


def read_text(path: Path) -> str:
    """Read a text file to score (fsutil.read_text_file) and refuse an empty one."""
    text = read_text_file(path)
    if not text.strip():
        raise DataError(f"text file is empty: {path}")
    return text


def perplexity(
    model: Any, tokenizer: Any, text: str, *, window: int = 512, stride: int | None = None,
    max_tokens: int | None = None, progress: Callable[[float], None] | None = None,
) -> EvalResult:
    """Sliding-window perplexity of ``text`` under ``model``."""
    import torch

    stride = window // 2 if stride is None else stride
    if stride < 1 or window < 2 or stride > window:
        raise InvalidParameterError("need 1 <= stride <= window and window >= 2")
    start = time.perf_counter()
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    if max_tokens:
        ids = ids[:max_tokens]
    if ids.numel() < 2:
        raise DataError("the text is too short to evaluate (needs at least 2 tokens)")
    ctx = getattr(model.config, "max_position_embeddings", None) or window
    window = min(window, int(ctx))
    stride = min(stride, window)
    device = next(model.parameters()).device
    total_nll = 0.0
    counted = 0
    prev_end = 0
    n = ids.numel()
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bitsandbytes warns on every matmul on the CPU
        for begin in range(0, n, stride):
            end = min(begin + window, n)
            chunk = ids[begin:end].unsqueeze(0).to(device)
            logits = model(input_ids=chunk).logits[0].float()
            # score targets in [max(prev_end, begin+1), end): new tokens only
            first = max(prev_end, begin + 1)
            targets = chunk[0, first - begin:]
            preds = logits[first - begin - 1:end - begin - 1]
            if targets.numel():
                nll = torch.nn.functional.cross_entropy(preds, targets, reduction="sum")
                total_nll += float(nll)
                counted += targets.numel()
            prev_end = end
            if progress:
                progress(end / n)
            if end == n:
                break
    mean = total_nll / counted
    return EvalResult(math.exp(mean), counted, mean, time.perf_counter() - start)


def perplexity_stepwise(
    backend: Any, tokenizer: Any, text: str, *, window: int = 512, stride: int | None = None,
    max_tokens: int | None = None, progress: Callable[[float], None] | None = None,
) -> EvalResult:
    """The same sliding-window perplexity on a decode backend (generation/backends).

    For runtimes that return next-token logits only (the onnx copies keep one row of
    logits per forward): each window's unscored context goes in as one prefill, then
    the scored tokens one step at a time, each step giving the logits of the next.
    """
    import numpy as np

    stride = window // 2 if stride is None else stride
    if stride < 1 or window < 2 or stride > window:
        raise InvalidParameterError("need 1 <= stride <= window and window >= 2")
    start = time.perf_counter()
    ids = [int(t) for t in tokenizer(text, add_special_tokens=False)["input_ids"]]
    if max_tokens:
        ids = ids[:max_tokens]
    if len(ids) < 2:
        raise DataError("the text is too short to evaluate (needs at least 2 tokens)")
    ctx = int(getattr(backend.model.config, "max_position_embeddings", None) or window)
    window = min(window, ctx)
    stride = min(stride, window)
    total_nll, counted, prev_end, n = 0.0, 0, 0, len(ids)
    state = backend.new_state()
    for begin in range(0, n, stride):
        end = min(begin + window, n)
        first = max(prev_end, begin + 1)
        state.reset()
        state.reserve(end - begin)
        logits = state.extend(ids[begin:first])
        for t in range(first, end):
            row = np.asarray(logits.float().cpu() if hasattr(logits, "cpu") else logits,
                             dtype=np.float64).reshape(-1)
            top = row.max()
            total_nll += float(np.log(np.exp(row - top).sum()) + top - row[ids[t]])
            counted += 1
            if t + 1 < end:
                logits = state.extend([ids[t]])
        prev_end = end
        if progress:
            progress(end / n)
        if end == n:
            break
    state.close()
    mean = total_nll / counted
    return EvalResult(math.exp(mean), counted, mean, time.perf_counter() - start)


def evaluate(lm: Any, text: str, **kwargs: Any) -> EvalResult:
    """Perplexity of a LoadedModel on either runtime (onnx copies score step by step)."""
    from slmchat.engine import runtimes

    runtime = runtimes.runtime_of(lm.info)
    if not runtime.scores_sequences:
        return perplexity_stepwise(runtime.backend(lm), lm.tokenizer, text, **kwargs)
    return perplexity(lm.model, lm.tokenizer, text, **kwargs)
