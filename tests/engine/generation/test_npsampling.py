"""The numpy logits processors (onnx runtime) equal the torch ones (transformers runtime)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slmchat.engine.generation import npsampling, sampling
from slmchat.engine.generation.sampling import SamplingParams

PARAMS = [
    SamplingParams(),
    SamplingParams(temperature=0.0, repetition_penalty=1.3),
    SamplingParams(temperature=1.2, top_k=0, top_p=0.5, min_p=0.1, repetition_penalty=1.0),
    SamplingParams(temperature=0.3, top_k=5, top_p=1.0, repetition_penalty=0.8),
    SamplingParams(temperature=2.0, top_k=1000, top_p=0.99, min_p=0.05),
    SamplingParams(temperature=0.7, top_k=40, top_p=0.8, repetition_penalty=1.1),
]


def _random(seed: int, vocab: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(1, vocab, generator=gen) * 4, torch.randint(0, vocab, (1, 60), generator=gen)


@pytest.mark.parametrize("params", PARAMS)
def test_process_matches_torch(params: SamplingParams) -> None:
    for seed in range(8):
        scores, ids = _random(seed)
        ref = sampling.process(ids, scores.clone(), params).numpy()
        ours = npsampling.process(ids[0].numpy(), scores.numpy().copy(), params)
        assert ours.dtype == np.float32
        # Same tokens kept, same values for them (float32 ops in the same order).
        assert np.array_equal(np.isneginf(ours), np.isneginf(ref))
        kept = ~np.isneginf(ref)
        np.testing.assert_allclose(ours[kept], ref[kept], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["top_k", "top_p", "min_p"])
def test_each_processor_matches_torch(name: str) -> None:
    arg = {"top_k": 17, "top_p": 0.7, "min_p": 0.05}[name]
    for seed in range(8):
        scores, _ = _random(seed, vocab=4000)
        ref = getattr(sampling, name)(scores.clone(), arg).numpy()
        ours = getattr(npsampling, name)(scores.numpy().copy(), arg)
        assert np.array_equal(np.isneginf(ours), np.isneginf(ref))


def test_repetition_penalty_matches_torch_with_repeats() -> None:
    scores, _ = _random(3, vocab=300)
    ids = torch.tensor([[5, 5, 7, 299, 7, 0, 5]])
    ref = sampling.repetition_penalty(ids, scores.clone(), 1.7).numpy()
    ours = npsampling.repetition_penalty(ids[0].numpy(), scores.numpy().copy(), 1.7)
    np.testing.assert_allclose(ours, ref, rtol=1e-6)


def test_fast_top_p_after_top_k_equals_full_top_p() -> None:
    for seed in range(8):
        scores, _ = _random(seed, vocab=5000)
        s = npsampling.top_k(scores.numpy(), 50)
        assert np.array_equal(npsampling._top_p_fast(s, 0.9), npsampling.top_p(s, 0.9))


def test_sampler_greedy_and_seeded() -> None:
    scores, _ = _random(0, vocab=1000)
    logits = scores.numpy()
    greedy = npsampling.NumpySampler([1, 2, 3], SamplingParams(temperature=0, repetition_penalty=1.0,
                                                                max_new_tokens=4), seed=0)
    assert greedy.pick(logits) == int(np.argmax(logits))
    hot = SamplingParams(temperature=1.5, top_k=0, top_p=1.0, max_new_tokens=50)

    def draw(seed: int) -> list[int]:
        s = npsampling.NumpySampler([1, 2, 3], hot, seed=seed)
        out = []
        for _ in range(50):
            out.append(s.pick(logits))
            s.append(out[-1])
        return out

    assert draw(11) == draw(11)
    assert draw(11) != draw(12)
    assert len(set(draw(11))) > 5  # really sampling, not argmax


def test_sampler_follows_the_distribution() -> None:
    logits = np.log(np.array([[0.7, 0.2, 0.1, 1e-9]], dtype=np.float32))
    s = npsampling.NumpySampler([], SamplingParams(temperature=1.0, top_k=0, top_p=1.0,
                                                   repetition_penalty=1.0, max_new_tokens=1), 0)
    counts = np.bincount([s.pick(logits) for _ in range(4000)], minlength=4)
    assert abs(counts[0] / 4000 - 0.7) < 0.04 and counts[3] == 0
