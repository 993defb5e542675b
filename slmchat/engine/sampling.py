"""Logits processing for sampling, op for op the same as transformers' warpers.

Why not import transformers' LogitsProcessorList: importing ``transformers.generation``
pulls in most of transformers (seconds at start-up on a small CPU), and the lite
start-up path (engine/lite.py) runs without transformers at all. The functions below
follow RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper,
TopPLogitsWarper and MinPLogitsWarper (min_tokens_to_keep=1) exactly;
tests/engine/test_sampling.py compares them with transformers on random logits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from slmchat.engine.generate import SamplingParams

_NEG_INF = float("-inf")


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
