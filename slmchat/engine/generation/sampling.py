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
