"""The transformers backend: today's runners (generation/runners.py) behind the seam.

Any architecture, GPU, bitsandbytes, adapters applied live, the lean Llama runner and the
lite loader's model; logits are torch tensors and sampling is sampling.py's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slmchat.engine.generation import sampling
from slmchat.engine.generation.backends.base import config_stop_ids
from slmchat.engine.generation.runners import get_runner
from slmchat.engine.generation.sampling import SamplingParams


class TransformersState:
    def __init__(self, runner: Any, device: Any) -> None:
        self._runner = runner
        self._device = device
        self._cache: Any = None
        self.tokens: list[int] = []

    def reserve(self, total: int) -> None:
        return None  # caches grow as they go

    def extend(self, ids: Sequence[int]) -> Any:
        import torch

        if self._cache is None:
            self._cache = self._runner.new_cache()
        feed = torch.tensor([list(ids)], device=self._device)
        with torch.inference_mode():
            logits, self._cache = self._runner.forward(feed, self._cache)
        self.tokens.extend(ids)
        return logits.float()

    @property
    def verifies(self) -> bool:
        # A cache that cannot crop could not drop rejected drafts.
        return self._cache is None or hasattr(self._cache, "crop")

    def score(self, ids: Sequence[int]) -> Any:
        import torch

        if self._cache is None:
            self._cache = self._runner.new_cache()
        feed = torch.tensor([list(ids)], device=self._device)
        with torch.inference_mode():
            logits, self._cache = self._runner.forward_all(feed, self._cache)
        self.tokens.extend(ids)
        return logits.float()

    def rewind(self, n: int) -> int:
        if n >= len(self.tokens):
            return len(self.tokens)
        if n <= 0 or self._cache is None or not hasattr(self._cache, "crop"):
            self.reset()
            return 0
        self._cache.crop(-(len(self.tokens) - n))  # transformers 5: a negative count removes
        del self.tokens[n:]
        return n

    def reset(self) -> None:
        self._cache, self.tokens = None, []

    def close(self) -> None:
        self.reset()


class TorchSampler:
    """sampling.py's processors and a seeded torch generator."""

    def __init__(self, prompt: Sequence[int], params: SamplingParams, seed: int, device: Any) -> None:
        import torch

        self.params = params
        self._gen = torch.Generator(device=device if device.type == "cuda" else "cpu")
        self._gen.manual_seed(seed)
        # Prompt + reply ids for the repetition penalty, allocated once (torch.cat per
        # token would be O(n) per token).
        self._ids = torch.empty((1, len(prompt) + params.max_new_tokens), dtype=torch.long,
                                device=device)
        self._ids[0, : len(prompt)] = torch.tensor(list(prompt), dtype=torch.long)
        self._n = len(prompt)

    def append(self, token: int) -> None:
        self._ids[0, self._n] = token
        self._n += 1

    def pick(self, logits: Any) -> int:
        import torch

        with torch.inference_mode():
            scores = sampling.process(self._ids[:, : self._n], logits, self.params)
            if self.params.temperature > 0:
                probs = torch.softmax(scores, dim=-1)
                return int(torch.multinomial(probs, 1, generator=self._gen)[0, 0])
            return int(torch.argmax(scores, dim=-1)[0])


class TransformersBackend:
    runtime = "transformers"

    def __init__(self, model: Any, runner_kind: str = "auto") -> None:
        self.model = model
        self._runner = get_runner(model, runner_kind)
        self._device = next(model.parameters()).device

    @property
    def key(self) -> int:
        return id(self._runner)

    def new_state(self) -> TransformersState:
        return TransformersState(self._runner, self._device)

    def sampler(self, prompt: Sequence[int], params: SamplingParams, seed: int) -> TorchSampler:
        return TorchSampler(prompt, params, seed, self._device)

    def stop_ids(self, tokenizer: Any) -> set[int]:
        return config_stop_ids(self.model, tokenizer)
