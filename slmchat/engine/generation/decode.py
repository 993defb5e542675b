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
from dataclasses import dataclass
from typing import Any, Literal

from slmchat.engine.generation import speculative
from slmchat.engine.generation.backends import Backend, ContextFull
from slmchat.engine.generation.constraints import Constraint, Guide
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.generation.speculative import AdaptiveK, Drafter, LookupDrafter, SpecStats
from slmchat.engine.generation.textstream import IncrementalDetokenizer, StopFilter
from slmchat.errors import InvalidParameterError, first_line

FinishReason = Literal["stop", "length", "cancelled", "error"]
# A long prompt is fed in chunks of this many tokens with the cancel flag checked between
# them, so Esc, Ctrl+C or a client that leaves frees the model within one chunk.
PREFILL_CHUNK = 512


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
    # Reasoning ("thinking") text, told apart from ``text`` by generation/reasoning.py (a
    # layer over this loop's stream), and the tokens the reasoning block took so far.
    reasoning: str = ""
    reasoning_tokens: int = 0
    finish_reason: FinishReason | None = None
    error: str | None = None
    constraint: str | None = None  # constraints.Constraint.label when the reply was constrained
    warning: str | None = None  # last chunk: a one-line note on the model (a damaged copy)
    served_by: str | None = None  # last chunk of a remote reply: the server's fingerprint
    speculative: str | None = None  # the drafter ("lookup", "draft") when speculation ran
    drafted: int = 0  # draft tokens verified so far in this reply
    accepted: int = 0  # of them, those the model kept
    # ``text`` came out at a draft token the model kept (speculative decoding): the chat
    # can tint it (settings ui.tint_accepted_drafts). A chunk is one token's released
    # text, so this marks exactly the accepted tokens' text, except where the text layer
    # held text back (a split multi-byte character, a possible stop string) and gave it
    # out at a later token, whose flag it then takes.
    accepted_draft: bool = False


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
    """The decode state (KV cache) of the last sequence fed to a model, kept between
    turns so that a conversation that grows feeds only its new tokens."""

    model_id: int = 0  # Backend.key of the weights the state belongs to
    state: Any = None  # backends.DecodeState

    @property
    def tokens(self) -> list[int]:
        return list(self.state.tokens) if self.state is not None else []

    def take(self, key: int) -> Any:
        """The kept state if it belongs to ``key`` (then no longer kept here), else None."""
        state, self.state = self.state, None
        if state is not None and self.model_id != key:
            state.close()
            return None
        return state

    def keep(self, key: int, state: Any) -> None:
        self.model_id, self.state = key, state

    def reset(self) -> None:
        if self.state is not None:
            self.state.close()
        self.model_id, self.state = 0, None


def stream_generate(
    model: Any,
    tokenizer: Any,
    input_ids: Sequence[int],
    params: SamplingParams,
    cancel: CancelToken | None = None,
    prompt_cache: PromptCache | None = None,
    runner_kind: str = "auto",
) -> Iterator[GenerationChunk]:
    """Yield the reply of a torch ``model`` (transformers, or the lite loader's lean
    Llama) to ``input_ids`` chunk by chunk. Models of other runtimes stream through
    ``stream_backend`` with their runtime's backend (engine/runtimes.backend_for)."""
    from slmchat.engine.generation.backends.transformers import TransformersBackend

    params.validate()
    if not input_ids:
        raise InvalidParameterError("the prompt is empty")
    yield from stream_backend(TransformersBackend(model, runner_kind), tokenizer, input_ids,
                              params, cancel, prompt_cache)


def stream_backend(
    backend: Backend,
    tokenizer: Any,
    input_ids: Sequence[int],
    params: SamplingParams,
    cancel: CancelToken | None = None,
    prompt_cache: PromptCache | None = None,
    constraint: Constraint | None = None,
    drafter: Drafter | None = None,
) -> Iterator[GenerationChunk]:
    """The decode loop over the backend seam.

    The token layer (backend forward over a KV state, logits processing, sampling) and
    the text layer (textstream: incremental detokenizer, stop strings with hold-back)
    both cost the same for the 2,000th token as for the 2nd. Errors inside the loop end
    the stream with ``finish_reason="error"`` (the text produced so far already
    yielded), so callers never lose a partial reply.

    ``drafter``: speculative decoding (speculative.py) where the state can score several
    tokens in one forward; each emitted token is still picked from the model's own
    logits, one pick per token, so the reply is the one plain decoding gives.
    """
    params.validate()
    if not input_ids:
        raise InvalidParameterError("the prompt is empty")
    seed = params.seed if params.seed is not None else random.randrange(2**31)
    stop_ids = backend.stop_ids(tokenizer)
    # Compiled before any token: a constraint that does not compile is one line, not a reply.
    guide = Guide(constraint, tokenizer, len(tokenizer), stop_ids) if constraint is not None else None
    start = time.perf_counter()
    prompt = list(input_ids)
    state, reused = _prepare_state(backend, prompt, prompt_cache)
    sampler = backend.sampler(prompt, params, seed)
    detok = IncrementalDetokenizer(tokenizer)
    stops = StopFilter(params.stop)
    generated = detok.tokens
    ttft: float | None = None
    prefill_tps = 0.0
    first_token_at = start
    finish: FinishReason | None = None
    error: str | None = None
    feed: list[int] = prompt[reused:]
    spec = SpecStats()
    if drafter is not None and not speculative.supports(state):
        drafter.close()  # this state cannot score drafts (an ONNX copy with pruned logits)
        drafter = None
    budget = AdaptiveK()
    # A state whose one-position forwards round differently from its several-position
    # ones (onnx: backends/onnx.py) never gets a one-position decode forward: a step with
    # no draft scores a guess beside its token (what followed that token last time),
    # kept when it is the model's own pick. The reply is then the same with or without
    # drafts; guesses are not counted as drafts.
    guesser = (LookupDrafter(prompt, min_ngram=1)
               if getattr(state, "min_rows", 1) > 1 else None)

    def chunk(text: str, reason: FinishReason | None = None,
              accepted_draft: bool = False) -> GenerationChunk:
        now = time.perf_counter()
        decode_time = now - first_token_at
        decode_tps = (len(generated) - 1) / decode_time if len(generated) > 1 and decode_time > 0 else 0.0
        return GenerationChunk(
            text=text, new_tokens=len(generated), prompt_tokens=len(prompt), ttft_s=ttft,
            prefill_tps=prefill_tps, decode_tps=decode_tps, seed=seed, cached_tokens=reused,
            finish_reason=reason, error=error,
            constraint=constraint.label if constraint is not None else None,
            speculative=drafter.name if drafter is not None else None,
            drafted=spec.drafted, accepted=spec.accepted, accepted_draft=accepted_draft,
        )

    def take(logits: Any) -> tuple[int, FinishReason | None, str]:
        """Pick the next token from ``logits`` and pass it through the text layer:
        (token, the finish it causes or None, the text to show)."""
        nonlocal ttft, first_token_at, prefill_tps
        if guide is not None:
            logits = guide.mask(logits)
        token = sampler.pick(logits)
        if ttft is None:
            ttft = time.perf_counter() - start
            first_token_at = time.perf_counter()
            prefill_tps = (len(prompt) - reused) / ttft if ttft > 0 else 0.0
        if token in stop_ids and not params.ignore_eos:
            return token, "stop", ""
        sampler.append(token)
        if guide is not None:
            guide.consume(token)
        if drafter is not None:
            drafter.append(token)
        if guesser is not None:
            guesser.append(token)
        shown = stops.feed(detok.add(token))
        if stops.stopped or (guide is not None and guide.done):  # the grammar is complete
            return token, "stop", shown
        if len(generated) >= params.max_new_tokens:
            return token, "length", shown
        return token, None, shown

    try:
        state.reserve(len(prompt) + params.max_new_tokens)
        try:
            while len(feed) > PREFILL_CHUNK and not (cancel is not None and cancel.cancelled):
                state.extend(feed[:PREFILL_CHUNK])
                feed = feed[PREFILL_CHUNK:]
        except ContextFull:
            pass  # the first step below raises it again and ends the reply with "length"
        if drafter is not None:
            for t in prompt:
                drafter.append(t)
        while finish is None:
            if cancel is not None and cancel.cancelled:
                finish = "cancelled"
                break
            draft = _draft(drafter, state, budget, feed, params.max_new_tokens - len(generated))
            guessed = not draft and guesser is not None and len(feed) == 1
            if guessed and guesser is not None:
                draft = guesser.propose(1) or feed[:1]
            try:
                rows, draft = _forward(state, feed, draft)
            except ContextFull:
                finish = "length"
                break
            base = len(state.tokens) - len(draft)  # tokens kept whatever the verdict
            kept = 0
            for i in range(len(draft) + 1):
                token, finish, shown = take(rows[len(feed) - 1 + i:len(feed) + i] if draft else rows)
                # The draft's i-th token, kept: counted in ``accepted`` just below.
                accepted = finish is None and i < len(draft) and token == draft[i]
                if shown:
                    yield chunk(shown, accepted_draft=accepted and not guessed)
                if not accepted:
                    break
                kept += 1
                if cancel is not None and cancel.cancelled:
                    break
            feed = [token]
            if draft:
                if not guessed:
                    spec.drafted += len(draft)
                    spec.accepted += kept
                    budget.record(len(draft), kept)
                if kept < len(draft) and state.rewind(base + kept) != base + kept:
                    raise RuntimeError("the KV cache could not drop the rejected draft tokens")
        if finish in ("length", "cancelled") or (guide is not None and not stops.stopped):
            # Text held back for a possible stop string that never completed.
            rest = stops.feed(detok.flush()) + stops.flush()
            if rest:
                yield chunk(rest)
    except Exception as exc:  # keep what was produced; report the error as the finish
        finish = "error"
        error = f"{type(exc).__name__}: {first_line(exc, default='')}"
        state.close()
        if drafter is not None:
            drafter.close()
        if prompt_cache is not None:
            prompt_cache.reset()
        yield chunk("", finish)
        return
    if drafter is not None:
        drafter.close()
    if prompt_cache is not None:
        prompt_cache.keep(backend.key, state)
    else:
        state.close()
    yield chunk("", finish)


def _draft(drafter: Drafter | None, state: Any, budget: AdaptiveK, feed: list[int],
           left: int) -> list[int]:
    """The draft to verify after ``feed`` (decode steps only, never beside a prefill)."""
    if drafter is None or len(feed) != 1 or left <= 1 or not speculative.supports(state):
        return []
    k = min(budget.want(), left - 1)
    return drafter.propose(k) if k > 0 else []


def _forward(state: Any, feed: list[int], draft: list[int]) -> tuple[Any, list[int]]:
    """(logits rows, the draft they verify): ``feed`` + ``draft`` scored in one forward,
    or ``feed`` alone when there is no draft or no room in the context for it."""
    if draft:
        try:
            return state.score(feed + draft), draft
        except ContextFull:
            pass
    return state.extend(feed), []


def _prepare_state(
    backend: Backend, prompt: list[int], prompt_cache: PromptCache | None
) -> tuple[Any, int]:
    """Return (state, n_reused): the kept state rewound to the prefix it shares with
    ``prompt`` (at least one prompt token is always fed, for the next-token logits)."""
    state = prompt_cache.take(backend.key) if prompt_cache is not None else None
    if state is None:
        return backend.new_state(), 0
    old = state.tokens
    n = 0
    limit = min(len(old), len(prompt) - 1)
    while n < limit and old[n] == prompt[n]:
        n += 1
    return state, state.rewind(n)
