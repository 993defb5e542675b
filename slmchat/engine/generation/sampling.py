"""Logits processing for sampling, op for op the same as transformers' warpers.

Why not import transformers' LogitsProcessorList: importing ``transformers.generation``
pulls in most of transformers (seconds at start-up on a small CPU), and the lite
start-up path (engine/model/lite.py) runs without transformers at all. The functions below
follow RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper,
TopPLogitsWarper and MinPLogitsWarper (min_tokens_to_keep=1) exactly;
tests/engine/generation/test_sampling.py compares them with transformers on random logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from slmchat.errors import InvalidParameterError

if TYPE_CHECKING:
    import torch


_NEG_INF = float("-inf")


@dataclass(frozen=True)
class Range:
    """The valid values of one sampling setting: the single definition that
    SamplingParams.validate, settings.toml (config.py), the CLI flags and the settings
    panel all read."""

    name: str
    label: str
    kind: type
    lo: float | None
    lo_open: bool
    hi: float | None
    hi_open: bool
    hint: str = ""

    def describe(self) -> str:
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        hi = "2^63" if self.hi == 2**63 else f"{self.hi:,.0f}" if self.hi >= 1e6 else f"{self.hi:g}"
        return f"{'(' if self.lo_open else '['}{self.lo:g}, {hi}{')' if self.hi_open else ']'}"

    def ok(self, value: float) -> bool:
        # Written so that NaN fails every comparison and is refused.
        above = self.lo is None or (value > self.lo if self.lo_open else value >= self.lo)
        below = self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)
        return bool(above and below)

    def check(self, value: float | None) -> None:
        if value is None and self.name == "seed":
            return
        if value is None or not self.ok(value):
            raise InvalidParameterError(f"{self.name} must be in {self.describe()}, got {value}")

    def pydantic_bounds(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.lo is not None:
            out["gt" if self.lo_open else "ge"] = self.kind(self.lo)
        if self.hi is not None:
            out["lt" if self.hi_open else "le"] = self.kind(self.hi)
        return out


SAMPLING_RANGES: tuple[Range, ...] = (
    Range("temperature", "Temperature", float, 0.0, False, 5.0, False, "0 = greedy"),
    Range("top_p", "Top p", float, 0.0, True, 1.0, False, "1 = off"),
    Range("top_k", "Top k", int, 0, False, None, False, "0 = off"),
    Range("min_p", "Min p", float, 0.0, False, 1.0, True, "0 = off"),
    Range("repetition_penalty", "Repetition penalty", float, 0.0, True, 10.0, False, "1 = off"),
    Range("max_new_tokens", "Max new tokens", int, 1, False, 1_000_000, False, "reply length limit"),
    Range("seed", "Seed", int, 0, False, 2**63, True, "none = random"),
)
RANGES: dict[str, Range] = {r.name: r for r in SAMPLING_RANGES}


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
        for r in SAMPLING_RANGES:
            r.check(getattr(self, r.name))
        return self


def repetition_penalty(input_ids: torch.Tensor, scores: torch.Tensor, penalty: float) -> torch.Tensor:
    import torch

    vocab = scores.shape[-1]
    ids = input_ids.clamp(max=vocab)
    padded = torch.nn.functional.pad(scores, (0, 1))
    score = torch.gather(padded, 1, ids)
    score = torch.where(score < 0, score * penalty, score / penalty)
    return padded.scatter(1, ids, score)[..., :vocab]


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    import torch

    k = min(max(k, 1), scores.size(-1))
    remove = scores < torch.topk(scores, k)[0][..., -1, None]
    return scores.masked_fill(remove, _NEG_INF)


def top_p(scores: torch.Tensor, p: float) -> torch.Tensor:
    import torch

    sorted_logits, sorted_indices = torch.sort(scores, descending=False)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    sorted_remove = cumulative <= (1 - p)
    sorted_remove[..., -1:] = 0
    remove = sorted_remove.scatter(1, sorted_indices, sorted_remove)
    return scores.masked_fill(remove, _NEG_INF)


def min_p(scores: torch.Tensor, p: float) -> torch.Tensor:
    import torch

    probs = torch.softmax(scores, dim=-1)
    remove = probs < p * probs.amax(dim=-1, keepdim=True)
    remove.scatter_(-1, torch.topk(probs, 1, dim=-1).indices, False)
    return scores.masked_fill(remove, _NEG_INF)


def process(input_ids: torch.Tensor, scores: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Apply the processors in transformers' order for the given sampling params."""
    if params.repetition_penalty != 1.0:
        scores = repetition_penalty(input_ids, scores, params.repetition_penalty)
    if params.temperature > 0:
        scores = scores / params.temperature
        if params.top_k > 0:
            scores = top_k(scores, params.top_k)
        if params.top_p < 1.0:
            scores = top_p(scores, params.top_p)
        if params.min_p > 0:
            scores = min_p(scores, params.min_p)
    return scores
