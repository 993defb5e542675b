"""Stand-ins for the decode loop's Protocols (``generation/backends/base.py``: Backend,
DecodeState; ``generation/speculative.py``: Drafter). mypy checks this file
(pyproject.toml ``[tool.mypy] files``) and ``_as_protocols`` fails when one drifts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from slmchat.engine.generation.backends.base import Backend, DecodeState, Sampler
from slmchat.engine.generation.npsampling import NumpySampler
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.generation.speculative import Drafter


class Replay:
    """Proposes a known reply's next tokens, every ``bad``-th proposal position wrong:
    drafts are then partly accepted, partly rejected, deterministically."""

    name = "replay"

    def __init__(self, prompt_len: int, reply: list[int], bad: int = 4, vocab: int = 50) -> None:
        self.start, self.reply, self.bad, self.vocab = prompt_len, reply, bad, vocab
        self.n = 0

    def append(self, token: int) -> None:
        self.n += 1

    def propose(self, k: int) -> list[int]:
        at = self.n - self.start
        out = list(self.reply[at:at + k])
        for i in range(len(out)):
            if (at + i) % self.bad == self.bad - 1:
                out[i] = (out[i] + 1) % self.vocab
        return out

    def close(self) -> None:
        return None


class ScriptedState:
    """A KV cache that only counts: ``extend`` hands each chunk to ``on_extend``, which
    returns the logits (shape (1, V)). It cannot verify drafts or crop."""

    def __init__(self, on_extend: Callable[[Sequence[int]], Any]) -> None:
        self._tokens: list[int] = []
        self._on_extend = on_extend

    @property
    def tokens(self) -> list[int]:
        return self._tokens

    def reserve(self, total: int) -> None:
        pass

    def extend(self, ids: Sequence[int]) -> Any:
        return self._on_extend(ids)

    @property
    def verifies(self) -> bool:
        return False

    def score(self, ids: Sequence[int]) -> Any:
        raise NotImplementedError("a scripted state does not verify drafts")

    def rewind(self, n: int) -> int:
        return 0

    def reset(self) -> None:
        self._tokens = []

    def close(self) -> None:
        pass


class ScriptedBackend:
    """A backend whose states are ``ScriptedState``s, sampling with numpy."""

    runtime = "scripted"

    def __init__(self, on_extend: Callable[[Sequence[int]], Any]) -> None:
        self._on_extend = on_extend

    @property
    def key(self) -> int:
        return 1

    def new_state(self) -> ScriptedState:
        return ScriptedState(self._on_extend)

    def sampler(self, prompt: Sequence[int], params: SamplingParams, seed: int) -> Sampler:
        return NumpySampler(prompt, params, seed)

    def stop_ids(self, tokenizer: Any) -> set[int]:
        return set()


def _as_protocols(r: Replay, s: ScriptedState, b: ScriptedBackend) -> tuple[Any, ...]:
    """mypy: each stand-in is what it stands for (an error here names the one that drifted)."""
    checked: tuple[Drafter, DecodeState, Backend] = (r, s, b)
    return checked
