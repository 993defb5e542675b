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

from slmchat.engine import sampling
from slmchat.errors import InvalidParameterError, first_line

FinishReason = Literal["stop", "length", "cancelled", "error"]


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings. temperature 0 means greedy decoding."""

    temperature: float = 0.2  # SmolLM2-Instruct's recommended setting; 0 = greedy
    top_p: float = 0.9
    top_k: int = 50
    min_p: float = 0.0
    repetition_penalty: float = 1.1
    max_new_tokens: int = 512
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False  # benchmarks: always produce max_new_tokens

    def validate(self) -> SamplingParams:
        if not 0.0 <= self.temperature <= 5.0:
            raise InvalidParameterError(f"temperature must be in [0, 5], got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise InvalidParameterError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise InvalidParameterError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0.0 <= self.min_p < 1.0:
            raise InvalidParameterError(f"min_p must be in [0, 1), got {self.min_p}")
        if not 0.0 < self.repetition_penalty <= 10.0:
            raise InvalidParameterError(
                f"repetition_penalty must be in (0, 10], got {self.repetition_penalty}"
            )
        if not 1 <= self.max_new_tokens <= 1_000_000:
            raise InvalidParameterError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise InvalidParameterError(f"seed must be a non-negative integer, got {self.seed}")
        return self


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


def _holdback(text: str, stops: Sequence[str]) -> int:
    """How many trailing chars might be the start of a stop string (keep them back)."""
    keep = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                keep = max(keep, n)
                break
    return keep


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

    Errors inside the loop end the stream with ``finish_reason="error"`` (and the text
    produced so far already yielded), so callers never lose a partial reply.
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
    stops = tuple(s for s in params.stop if s)

    start = time.perf_counter()
    prompt = list(input_ids)
    runner = get_runner(model, runner_kind)
    cache, reused = _prepare_cache(runner, prompt, prompt_cache)
    feed = torch.tensor([prompt[reused:]], device=device)
    all_ids = torch.tensor([prompt], device=device)
    generated: list[int] = []
    emitted = ""
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
                logits = logits.float()
                scores = sampling.process(all_ids, logits, params)
                if params.temperature > 0:
                    probs = torch.softmax(scores, dim=-1)
                    token = int(torch.multinomial(probs, 1, generator=generator)[0, 0])
                else:
                    token = int(torch.argmax(scores, dim=-1)[0])
                if ttft is None:
                    ttft = time.perf_counter() - start
                    first_token_at = time.perf_counter()
                    prefill_tps = (len(prompt) - reused) / ttft if ttft > 0 else 0.0
                if token in stop_ids and not params.ignore_eos:
                    finish = "stop"
                    break
                generated.append(token)
                all_ids = torch.cat([all_ids, torch.tensor([[token]], device=device)], dim=1)
                feed = torch.tensor([[token]], device=device)
                text = tokenizer.decode(generated, skip_special_tokens=True)
                if text.endswith("\ufffd"):
                    continue  # an incomplete UTF-8 sequence: wait for the next token
                hit = min((text.find(s) for s in stops if s in text), default=-1)
                if hit >= 0:
                    if hit > len(emitted):
                        yield chunk(text[len(emitted):hit])
                    emitted = text[:hit]
                    finish = "stop"
                    break
                safe_end = len(text) - _holdback(text, stops)
                if safe_end > len(emitted):
                    delta = text[len(emitted):safe_end]
                    emitted = text[:safe_end]
                    yield chunk(delta)
            else:
                finish = "length"
            if finish in ("length", "cancelled") and generated:
                # Flush text held back for a possible stop string that never completed.
                text = tokenizer.decode(generated, skip_special_tokens=True).rstrip("\ufffd")
                if len(text) > len(emitted):
                    yield chunk(text[len(emitted):])
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


class HFRunner:
    """Plain transformers forward over a DynamicCache (any architecture, PEFT, bnb)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def new_cache(self) -> Any:
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    def forward(self, ids: Any, cache: Any) -> tuple[Any, Any]:
        # logits_to_keep=1: a 1,000-token prefill needs one row of logits, not 1,000.
        out = self.model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :], _out_cache(out, cache)


class FastRunner:
    """slmchat.engine.fastpath.FastLlama with the runner interface."""

    def __init__(self, fast: Any) -> None:
        self.fast = fast

    def new_cache(self) -> Any:
        return self.fast.new_cache()

    def forward(self, ids: Any, cache: Any) -> tuple[Any, Any]:
        return self.fast.forward(ids, cache), cache


def get_runner(model: Any, kind: str = "auto") -> Any:
    """The decode runner for ``model``, built once and kept on the model object.

    auto: the lean Llama path where it applies (fastpath.supports), else transformers.
    """
    from slmchat.engine import fastpath

    own = getattr(model, "slmchat_runner", None)  # lite models carry their runner
    if own is not None:
        return own
    if kind not in ("auto", "hf", "fast"):
        raise InvalidParameterError(f"unknown runner {kind!r} (auto, hf or fast)")
    use_fast = kind == "fast" or (kind == "auto" and fastpath.supports(model))
    if kind == "fast" and not fastpath.supports(model):
        raise InvalidParameterError("the fast runner supports plain Llama-architecture models only")
    attr = "_slmchat_runner_fast" if use_fast else "_slmchat_runner_hf"
    runner = getattr(model, attr, None)
    if runner is None:
        runner = FastRunner(fastpath.FastLlama.from_model(model)) if use_fast else HFRunner(model)
        model.__dict__[attr] = runner  # cached beside the weights it uses
    return runner


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


def _out_cache(out: Any, cache: Any) -> Any:
    for name in ("cache", "past_key_values"):
        value = getattr(out, name, None)
        if value is not None:
            return value
    return cache


def generate_text(
    model: Any, tokenizer: Any, input_ids: Sequence[int], params: SamplingParams
) -> tuple[str, GenerationChunk]:
    """Non-streaming convenience: the whole reply and the final chunk."""
    parts: list[str] = []
    last: GenerationChunk | None = None
    for last in stream_generate(model, tokenizer, input_ids, params):
        parts.append(last.text)
    assert last is not None
    return "".join(parts), last
