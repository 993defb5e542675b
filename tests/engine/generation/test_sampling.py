"""Our logits processors equal transformers' (same order, same ops)."""

from __future__ import annotations

import pytest
import torch

from slmchat.engine.generation import sampling
from slmchat.engine.generation.sampling import SamplingParams


def _reference(params: SamplingParams):
    from transformers import (
        LogitsProcessorList,
        MinPLogitsWarper,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    procs = LogitsProcessorList()
    if params.repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(params.repetition_penalty))
    if params.temperature > 0:
        procs.append(TemperatureLogitsWarper(params.temperature))
        if params.top_k > 0:
            procs.append(TopKLogitsWarper(params.top_k))
        if params.top_p < 1.0:
            procs.append(TopPLogitsWarper(params.top_p))
        if params.min_p > 0:
            procs.append(MinPLogitsWarper(params.min_p))
    return procs


@pytest.mark.parametrize("params", [
    SamplingParams(),
    SamplingParams(temperature=0.0, repetition_penalty=1.3),
    SamplingParams(temperature=1.2, top_k=0, top_p=0.5, min_p=0.1, repetition_penalty=1.0),
    SamplingParams(temperature=0.3, top_k=5, top_p=1.0, repetition_penalty=0.8),
    SamplingParams(temperature=2.0, top_k=1000, top_p=0.99, min_p=0.05),
])
def test_matches_transformers(params: SamplingParams) -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        scores = torch.randn(1, 500, generator=gen) * 4
        ids = torch.randint(0, 500, (1, 40), generator=gen)
        ours = sampling.process(ids, scores.clone(), params)
        ref = _reference(params)(ids, scores.clone())
        assert torch.equal(ours, ref)
