"""Speculative decoding: draft several tokens, verify them in one forward, keep what the
model would have produced anyway.

Decode on a CPU reads all the weights once per token; a forward over 1 + k tokens reads
them once too, so every draft token the model accepts is a token for (almost) free.
Drafts come from prompt lookup (the last n-gram of the conversation matched earlier in the
prompt, attached passages or the reply so far: what quoting, summarising and editing
tasks repeat) or from a small draft model with the same vocabulary.

Exactness: drafts are deterministic proposals (lookup copies tokens; the draft model
proposes its greedy token), so the standard accept/reject rule of speculative sampling
(accept d with probability min(1, p(d)/q(d)) = p(d), else sample from the residual
p restricted to tokens != d) is the same as *sampling the model's own token from p and
keeping the draft while they agree*. The decode loop does exactly that, one pick per
emitted token, with the repetition penalty, the constraint mask and the random stream
advanced as in plain decoding: greedy replies are token for token the plain ones, and a
seeded sampled reply is the same reply (up to floating-point differences between a
several-token forward and single-token forwards, which can flip an exact near-tie).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from slmchat.engine.generation.backends.base import ContextFull
from slmchat.errors import InvalidParameterError

Mode = Literal["auto", "off", "lookup", "draft"]
MODES: tuple[str, ...] = ("auto", "off", "lookup", "draft")

# Lookup: the longest n-gram tried first; below MIN_NGRAM a match is mostly chance.
MAX_NGRAM = 4
MIN_NGRAM = 2
K_START = 4
K_MAX = 10
# After this many drafts in a row with nothing accepted, stop drafting for a while; the
# first draft after a pause is a probe, and a probe with nothing accepted pauses again at
# once, for twice as long (up to COOLDOWN_MAX tokens). So a reply the drafter cannot
# predict (a chat that does not quote; a draft model that disagrees) pays for about
# log2(tokens) probes, not a draft every few tokens: on the 1.7B shape with every draft
# rejected, 64 tokens cost 5 drafts instead of 8 (benchmarks/bench_draft_overhead.py).
MISSES_BEFORE_PAUSE = 2
COOLDOWN_START = 4
COOLDOWN_MAX = 64


@dataclass(frozen=True)
class Speculation:
    """The ``--speculative`` setting: ``mode`` and, for ``draft``, the draft model."""

    mode: Mode = "auto"
    draft_model: str | None = None

    @property
    def label(self) -> str:
        return f"draft:{self.draft_model}" if self.mode == "draft" and self.draft_model else self.mode


def parse(text: str | None) -> Speculation:
    """``auto|off|lookup|draft[:MODEL]`` -> Speculation; InvalidParameterError otherwise."""
    raw = (text or "auto").strip()
    mode, _, model = raw.partition(":")
    mode = mode.strip().lower()
    if mode not in MODES:
        raise InvalidParameterError(
            f"unknown speculative mode {raw!r} (choose from auto, off, lookup, draft[:MODEL])")
    if model and mode != "draft":
        raise InvalidParameterError(f"only draft takes a model (got {raw!r})")
    return Speculation(mode, model.strip() or None)  # type: ignore[arg-type]


class Drafter(Protocol):
    """Proposes the next tokens after ``history`` (prompt + reply so far)."""

    name: str

    def append(self, token: int) -> None:
        """One more token of the history (prompt first, then each emitted token)."""

    def propose(self, k: int) -> list[int]:
        """Up to ``k`` tokens that may come next (empty: no guess)."""

    def close(self) -> None: ...


class LookupDrafter:
    """Prompt lookup: match the last n tokens (n from MAX_NGRAM down to MIN_NGRAM) with
    their most recent earlier occurrence and propose what followed it.

    An index from each n-gram to the position after its latest occurrence is updated per
    token, so a proposal costs O(n) whatever the conversation's length."""

    name = "lookup"

    def __init__(self, history: Sequence[int], max_ngram: int = MAX_NGRAM,
                 min_ngram: int = MIN_NGRAM) -> None:
        self.max_n, self.min_n = max_ngram, min_ngram
        self.tokens: list[int] = []
        self._after: list[dict[tuple[int, ...], int]] = [{} for _ in range(max_ngram + 1)]
        for t in history:
            self.append(int(t))

    def append(self, token: int) -> None:
        toks = self.tokens
        end = len(toks)  # the n-grams ending just before this token get it as continuation
        for n in range(self.min_n, self.max_n + 1):
            if end >= n:
                self._after[n][tuple(toks[end - n:end])] = end
        toks.append(token)

    def propose(self, k: int) -> list[int]:
        toks = self.tokens
        for n in range(self.max_n, self.min_n - 1, -1):
            if len(toks) < n:
                continue
            at = self._after[n].get(tuple(toks[-n:]))
            if at is not None:
                return toks[at:at + k]
        return []

    def close(self) -> None:
        return None


class PredictionDrafter:
    """A client's guess of the reply (OpenAI's Predicted Outputs: the file being edited,
    the text being rewritten). While the reply follows the guess, the guess's next tokens
    are the draft; once the reply leaves it, prompt lookup over the guess, the prompt and
    the reply takes over, so the unchanged part after an edit is found again.

    The decode loop appends the prompt's ``prompt_tokens`` tokens first, then each emitted
    token; the guess is aligned with the reply from its first token."""

    name = "prediction"

    def __init__(self, prediction: Sequence[int], prompt_tokens: int) -> None:
        self.prediction = [int(t) for t in prediction]
        self._prompt_left = prompt_tokens
        self._at = 0  # the next guess token, while the reply still follows the guess
        self._following = bool(self.prediction)
        self.lookup = LookupDrafter(self.prediction)

    def append(self, token: int) -> None:
        self.lookup.append(token)
        if self._prompt_left > 0:
            self._prompt_left -= 1
            return
        if self._following:
            if self._at < len(self.prediction) and self.prediction[self._at] == token:
                self._at += 1
            else:
                self._following = False

    def propose(self, k: int) -> list[int]:
        if self._following and self._at < len(self.prediction):
            return self.prediction[self._at:self._at + k]
        return self.lookup.propose(k)

    def close(self) -> None:
        return None


class AdaptiveK:
    """How many tokens to draft next: grows while drafts are accepted whole, shrinks when
    they are cut, and pauses drafting (falls back to one token per forward) when drafts
    keep failing."""

    def __init__(self, k: int = K_START, k_max: int = K_MAX) -> None:
        self.k, self.k_max = k, k_max
        self._misses = 0
        self._pause = 0  # tokens left to decode without drafting
        self._cooldown = COOLDOWN_START
        self._probing = False  # the next draft is the first after a pause

    def want(self) -> int:
        if self._pause > 0:
            self._pause -= 1
            self._probing = self._pause == 0
            return 0
        return self.k

    def record(self, drafted: int, accepted: int) -> None:
        if drafted <= 0:
            return
        if accepted == drafted:
            self.k = min(self.k_max, self.k + 2)
        else:
            self.k = max(1, accepted + 1 if accepted else self.k - 1)
        probe, self._probing = self._probing, False
        if accepted == 0:
            self._misses += 1
            if probe or self._misses >= MISSES_BEFORE_PAUSE:
                self._pause, self._misses = self._cooldown, 0
                self._cooldown = min(COOLDOWN_MAX, self._cooldown * 2)
        else:
            self._misses = 0
            self._cooldown = COOLDOWN_START


@dataclass
class SpecStats:
    """Per reply: tokens proposed and tokens of them the model kept."""

    drafted: int = 0
    accepted: int = 0

    @property
    def rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0


def supports(state: Any) -> bool:
    """A decode state that scores several tokens in one forward (DecodeState.score)."""
    return bool(getattr(state, "verifies", False))


class DraftModelDrafter:
    """A smaller model with the same vocabulary proposes its greedy continuation.

    Its own decode state follows the conversation: before each proposal it is rewound to
    the prefix it shares with the history (drafts the big model rejected leave it) and
    fed what it has not seen, so a proposal of k tokens costs k small single-token steps.
    Greedy drafts are deterministic proposals, which keeps the verification rule of the
    decode loop exact (module docstring)."""

    name = "draft"

    def __init__(self, backend: Any, history: Sequence[int] = (), chunk: int = 512) -> None:
        self._state = backend.new_state()
        self._chunk = chunk
        self.tokens: list[int] = [int(t) for t in history]

    def append(self, token: int) -> None:
        self.tokens.append(int(token))

    def _sync(self) -> Any:
        """Rewind to the shared prefix, feed the rest; return the next-token logits."""
        state, hist = self._state, self.tokens
        old = state.tokens
        n, limit = 0, min(len(old), len(hist) - 1)  # feed at least one token for logits
        while n < limit and old[n] == hist[n]:
            n += 1
        state.reserve(len(hist) + K_MAX + 1)
        kept = state.rewind(n)
        rest = hist[kept:]
        while len(rest) > self._chunk:
            state.extend(rest[:self._chunk])
            rest = rest[self._chunk:]
        return state.extend(rest)

    def propose(self, k: int) -> list[int]:
        if k <= 0 or not self.tokens:
            return []
        out: list[int] = []
        try:
            logits = self._sync()
            while True:
                out.append(_argmax(logits))
                if len(out) >= k:
                    return out
                logits = self._state.extend([out[-1]])
        except ContextFull:  # the draft's context is smaller: what it drafted so far
            return out

    def close(self) -> None:
        self._state.close()


def _argmax(logits: Any) -> int:
    if hasattr(logits, "argmax") and not hasattr(logits, "numpy"):  # numpy
        return int(logits.reshape(-1).argmax())
    return int(logits.reshape(-1).argmax().item())  # torch


def same_vocabulary(a: Any, b: Any) -> str | None:
    """None when tokenizers ``a`` and ``b`` share a vocabulary (a draft's tokens mean the
    same to the verifier), else why not. Checked, not assumed: the sizes, the end ids and
    the ids of a probe text with words, code, digits and non-Latin script."""
    if len(a) != len(b):
        return f"vocabularies differ in size ({len(a):,} and {len(b):,} tokens)"
    if getattr(a, "eos_token_id", None) != getattr(b, "eos_token_id", None):
        return "the end-of-sequence tokens differ"
    probe = ("The quick brown fox, 1234567 times: def f(x):\n    return x ** 2  # ok\n"
             "Überprüfung café — 日本語のテキスト 🙂 <|im_start|>user\n")
    if list(a(probe)["input_ids"]) != list(b(probe)["input_ids"]):
        return "the tokenizers split the same text differently"
    return None
