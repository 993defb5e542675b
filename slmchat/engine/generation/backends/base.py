"""The backend seam: a KV state that is extended, rewound and reset, and a sampler.

``Backend.new_state()`` gives a ``DecodeState`` for one sequence; ``extend(ids)`` feeds
tokens (the prompt in one call, then one token per step) and returns the next-token
logits only, never one row per prompt position; ``score(ids)`` feeds several
tokens and returns one row of logits per position (speculative decoding's verification,
where the runtime's forward can give them); ``rewind(n)`` keeps the first ``n``
tokens (a regenerated or edited turn, rejected draft tokens), ``reset()`` forgets them all, and ``close()``
frees the buffers. A state outlives one reply: the engine keeps it so that the next turn
of a growing conversation feeds only its new tokens. Logits are the backend's own array
type (torch tensor or numpy array), so each backend brings the sampler that reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from slmchat.engine.generation.sampling import SamplingParams


class ContextFull(Exception):
    """The state holds as many tokens as the model's context allows: the reply ends
    with finish_reason "length"."""


class DecodeState(Protocol):
    """KV cache of one token sequence."""

    @property
    def tokens(self) -> list[int]: ...

    def reserve(self, total: int) -> None:
        """Make room for ``total`` tokens in all (prompt + reply), before feeding them."""

    def extend(self, ids: Sequence[int]) -> Any:
        """Feed ``ids`` after ``tokens``; return the logits for the next token, shape (1, V)."""

    @property
    def verifies(self) -> bool:
        """``score`` works: one forward returns logits for every fed position."""

    def score(self, ids: Sequence[int]) -> Any:
        """Feed ``ids`` after ``tokens`` in one forward; return the logits after each of
        them, shape (len(ids), V): row i predicts the token after ``ids[:i + 1]``.
        Speculative decoding verifies drafts with it, then ``rewind``s the rejected ones."""

    def rewind(self, n: int) -> int:
        """Keep the first ``n`` tokens; return how many were kept (0 if it cannot crop)."""

    def reset(self) -> None: ...

    def close(self) -> None: ...


class Sampler(Protocol):
    def pick(self, logits: Any) -> int: ...

    def append(self, token: int) -> None: ...


class Backend(Protocol):
    runtime: str  # "onnx" | "transformers"

    @property
    def key(self) -> int:
        """Identity of the weights a state belongs to (a state is reused only with them)."""

    def new_state(self) -> DecodeState: ...

    def sampler(self, prompt: Sequence[int], params: SamplingParams, seed: int) -> Sampler: ...

    def stop_ids(self, tokenizer: Any) -> set[int]: ...


def config_stop_ids(model: Any, tokenizer: Any) -> set[int]:
    """End-of-sequence ids from the generation config, the model config and the tokenizer."""
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), getattr(model, "config", None)):
        eos = getattr(source, "eos_token_id", None)
        if isinstance(eos, int):
            ids.add(eos)
        elif isinstance(eos, list | tuple):
            ids.update(int(i) for i in eos)
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids
