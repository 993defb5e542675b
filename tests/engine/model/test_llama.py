"""The lean Llama runner must match transformers' forward (logits and greedy text)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from slmchat.engine.generation.decode import PromptCache, stream_generate
from slmchat.engine.generation.runners import get_runner
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model import llama as fastpath
from slmchat.engine.model.loader import load
from slmchat.engine.model.spec import ModelSpec


@pytest.fixture(scope="module")
def llama(tiny_llama_dir: Path):
    return load(ModelSpec(path=str(tiny_llama_dir), device="cpu"))


def test_supports_llama_not_gpt2(llama, tiny_gpt2_dir: Path) -> None:
    assert fastpath.supports(llama.model)
    gpt2 = load(ModelSpec(path=str(tiny_gpt2_dir), device="cpu"))
    assert not fastpath.supports(gpt2.model)
    assert type(get_runner(gpt2.model)).__name__ == "HFRunner"


def test_logits_match_transformers_prefill_and_decode(llama) -> None:
    ids = torch.tensor([[3, 17, 42, 99, 7, 120, 5, 64, 33]])
    fast = fastpath.FastLlama.from_model(llama.model)
    cache = fast.new_cache()
    with torch.no_grad():
        ref = llama.model(ids).logits
    got = fast.forward(ids[:, :5], cache)  # prefill
    assert torch.allclose(got, ref[:, 4], atol=1e-5)
    for pos in range(5, 9):  # one token at a time
        got = fast.forward(ids[:, pos:pos + 1], cache)
        assert torch.allclose(got, ref[:, pos], atol=1e-5)
    cache.crop(-3)  # drop 3 tokens, then re-feed two of them at once (masked prefill)
    got = fast.forward(ids[:, 6:8], cache)
    assert torch.allclose(got, ref[:, 7], atol=1e-5)


def test_cache_grows_past_first_chunk(llama) -> None:
    torch.manual_seed(0)
    ids = torch.randint(3, 200, (1, 250))
    fast = fastpath.FastLlama.from_model(llama.model)
    cache = fast.new_cache()
    fast.forward(ids[:, :200], cache)
    with torch.no_grad():
        ref = llama.model(ids).logits
    for pos in range(200, 250):
        got = fast.forward(ids[:, pos:pos + 1], cache)
    assert torch.allclose(got, ref[:, -1], atol=1e-4)


def _greedy_by_runner(lm, prompt: str, n: int) -> tuple[str, str]:
    """Greedy text of ``n`` tokens from the fast runner and from the transformers one."""
    ids = lm.tokenizer(prompt)["input_ids"]
    p = SamplingParams(temperature=0, max_new_tokens=n, ignore_eos=True)
    fast, ref = ("".join(c.text for c in stream_generate(lm.model, lm.tokenizer, ids, p,
                                                         runner_kind=kind))
                 for kind in ("fast", "hf"))
    return fast, ref


@pytest.mark.parametrize("prompt", ["The quick brown fox", "Paris is", "def add(a, b):"])
def test_greedy_text_identical_to_hf_runner(llama, prompt: str) -> None:
    fast, ref = _greedy_by_runner(llama, prompt, 40)
    assert fast == ref and fast


def test_prefix_reuse_with_fast_runner(llama) -> None:
    tok = llama.tokenizer
    p = SamplingParams(temperature=0, max_new_tokens=6, repetition_penalty=1.0)
    first = tok("Paris is the capital of France.")["input_ids"]
    second = first + tok(" Berlin is")["input_ids"]
    cache = PromptCache()
    list(stream_generate(llama.model, tok, first, p, prompt_cache=cache))
    reused = list(stream_generate(llama.model, tok, second, p, prompt_cache=cache))
    fresh = list(stream_generate(llama.model, tok, second, p, runner_kind="hf"))
    assert reused[-1].cached_tokens >= len(first)
    assert "".join(c.text for c in reused) == "".join(c.text for c in fresh)


def test_fast_runner_on_cpu_int8_matches_hf_runner(tiny_llama_dir: Path) -> None:
    lm = load(ModelSpec(path=str(tiny_llama_dir), device="cpu", quant="cpu-int8"))
    assert fastpath.supports(lm.model)
    fast, ref = _greedy_by_runner(lm, "The quick brown fox", 30)
    assert fast == ref and fast
