"""Streaming generation: an iterator of small dataclasses, cancellable between tokens.

Modelled on mlx-lm's ``stream_generate``: each step yields a ``GenerationChunk`` with
the new text, running counts and timings; the last chunk carries ``finish_reason``.
We run our own decode loop (one forward per token over a KV cache) instead of
``model.generate()`` so that cancellation is a flag checked between tokens, timings are
exact, and a cached prompt prefix can be reused across chat turns.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from slmchat.engine.generation import sampling
from slmchat.engine.generation.runners import get_runner
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.generation.textstream import IncrementalDetokenizer, StopFilter
from slmchat.errors import InvalidParameterError, first_line

FinishReason = Literal["stop", "length", "cancelled", "error"]


@dataclass(frozen=True)
class GenerationChunk:
    """One step of a streamed reply. ``text`` is the delta since the previous chunk."""

    text: str
    new_tokens: int
    prompt_tokens: int
    ttft_s: float | None
    prefill_tps: float
    decode_tps: float
    seed: int
    cached_tokens: int = 0  # prompt tokens reused from the previous turn's KV cache
    finish_reason: FinishReason | None = None
    error: str | None = None


class CancelToken:
    """A flag another thread sets; the decode loop checks it before every token."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass
class PromptCache:
    """KV cache of the last sequence fed to the model, for prefix reuse across turns."""

    model_id: int = 0
    tokens: list[int] = field(default_factory=list)
    cache: Any = None

    def reset(self) -> None:
        self.model_id, self.tokens, self.cache = 0, [], None


def _stop_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config):
        eos = getattr(source, "eos_token_id", None)
        if isinstance(eos, int):
            ids.add(eos)
        elif isinstance(eos, list | tuple):
            ids.update(int(i) for i in eos)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


def _sample(scores: Any, params: SamplingParams, generator: Any) -> int:
    import torch

    if params.temperature > 0:
        probs = torch.softmax(scores, dim=-1)
        return int(torch.multinomial(probs, 1, generator=generator)[0, 0])
    return int(torch.argmax(scores, dim=-1)[0])


class _History:
    """Prompt + reply token ids for the repetition penalty, in a buffer allocated once
    (growing a tensor with torch.cat per token is O(n) per token)."""

    def __init__(self, prompt: Sequence[int], room: int, device: Any) -> None:
        import torch

        self._ids = torch.empty((1, len(prompt) + room), dtype=torch.long, device=device)
        self._ids[0, : len(prompt)] = torch.tensor(prompt, dtype=torch.long)
        self._n = len(prompt)

    def append(self, token: int) -> None:
        self._ids[0, self._n] = token
        self._n += 1

    def view(self) -> Any:
        return self._ids[:, : self._n]


def stream_generate(
    model: Any,
    tokenizer: Any,
    input_ids: Sequence[int],
    params: SamplingParams,
    cancel: CancelToken | None = None,
    prompt_cache: PromptCache | None = None,
    runner_kind: str = "auto",
) -> Iterator[GenerationChunk]:
    """Yield the reply to ``input_ids`` chunk by chunk.

    The token layer (runner forward over a KV cache, logits processing, sampling) and
    the text layer (textstream: incremental detokenizer, stop strings with hold-back)
    both cost the same for the 2,000th token as for the 2nd. Errors inside the loop end
    the stream with ``finish_reason="error"`` (the text produced so far already
    yielded), so callers never lose a partial reply.
    """
    import torch

    params.validate()
    if not input_ids:
        raise InvalidParameterError("the prompt is empty")
    seed = params.seed if params.seed is not None else random.randrange(2**31)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device if device.type == "cuda" else "cpu")
    generator.manual_seed(seed)
    stop_ids = _stop_ids(model, tokenizer)

    start = time.perf_counter()
    prompt = list(input_ids)
    runner = get_runner(model, runner_kind)
    cache, reused = _prepare_cache(runner, prompt, prompt_cache)
    feed = torch.tensor([prompt[reused:]], device=device)
    history = _History(prompt, params.max_new_tokens, device)
    detok = IncrementalDetokenizer(tokenizer)
    stops = StopFilter(params.stop)
    generated = detok.tokens
    ttft: float | None = None
    prefill_tps = 0.0
    first_token_at = start
    finish: FinishReason = "length"
    error: str | None = None
    fed: list[int] = prompt[:reused]

    def chunk(text: str, reason: FinishReason | None = None) -> GenerationChunk:
        now = time.perf_counter()
        decode_time = now - first_token_at
        decode_tps = (len(generated) - 1) / decode_time if len(generated) > 1 and decode_time > 0 else 0.0
        return GenerationChunk(
            text=text, new_tokens=len(generated), prompt_tokens=len(prompt), ttft_s=ttft,
            prefill_tps=prefill_tps, decode_tps=decode_tps, seed=seed, cached_tokens=reused,
            finish_reason=reason, error=error,
        )

    try:
        with torch.inference_mode():
            while len(generated) < params.max_new_tokens:
                if cancel is not None and cancel.cancelled:
                    finish = "cancelled"
                    break
                logits, cache = runner.forward(feed, cache)
                fed.extend(feed[0].tolist())
                scores = sampling.process(history.view(), logits.float(), params)
                token = _sample(scores, params, generator)
                if ttft is None:
                    ttft = time.perf_counter() - start
                    first_token_at = time.perf_counter()
                    prefill_tps = (len(prompt) - reused) / ttft if ttft > 0 else 0.0
                if token in stop_ids and not params.ignore_eos:
                    finish = "stop"
                    break
                history.append(token)
                feed = torch.tensor([[token]], device=device)
                shown = stops.feed(detok.add(token))
                if shown:
                    yield chunk(shown)
                if stops.stopped:
                    finish = "stop"
                    break
            else:
                finish = "length"
            if finish in ("length", "cancelled"):
                # Text held back for a possible stop string that never completed.
                rest = stops.feed(detok.flush()) + stops.flush()
                if rest:
                    yield chunk(rest)
    except Exception as exc:  # keep what was produced; report the error as the finish
        finish = "error"
        error = f"{type(exc).__name__}: {first_line(exc, default='')}"
        if prompt_cache is not None:
            prompt_cache.reset()
        yield chunk("", finish)
        return
    if prompt_cache is not None:
        prompt_cache.model_id, prompt_cache.tokens, prompt_cache.cache = id(runner), fed, cache
    yield chunk("", finish)


def _prepare_cache(
    runner: Any, prompt: list[int], prompt_cache: PromptCache | None
) -> tuple[Any, int]:
    """Return (cache, n_reused) — the cached prefix shared with ``prompt``, cropped."""
    if prompt_cache is None or prompt_cache.cache is None or prompt_cache.model_id != id(runner):
        return runner.new_cache(), 0
    old = prompt_cache.tokens
    n = 0
    limit = min(len(old), len(prompt) - 1)  # always feed at least one new token
    while n < limit and old[n] == prompt[n]:
        n += 1
    cache = prompt_cache.cache
    prompt_cache.reset()  # the cache object is consumed by this generation
    if n == 0 or not hasattr(cache, "crop"):
        return runner.new_cache(), 0
    if len(old) > n:
        cache.crop(-(len(old) - n))  # transformers 5: a negative count removes tokens
    return cache, n


