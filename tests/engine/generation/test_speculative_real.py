"""Speculative decoding on the real default model: greedy replies with prompt lookup are
the plain replies token for token, on every runtime that verifies drafts exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmchat.engine.generation.decode import PromptCache, stream_backend
from slmchat.engine.generation.prompting import ChatMessage, build_prompt
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.generation.speculative import LookupDrafter
from slmchat.engine.model.spec import ModelSpec

pytestmark = pytest.mark.realmodel

PASTED = (
    "Our team finished the migration of the billing service last week. We moved the "
    "database to the new cluster, updated the connection settings in every service that "
    "reads invoices, and ran the old and new systems side by side for three days. No "
    "invoices were lost, and the response time of the billing page went down from 900 "
    "milliseconds to 250 milliseconds."
)
PROMPTS = [f"Rewrite this paragraph so that it is easier to read.\n\n{PASTED}",
           "Write a short poem about the sea."]
GREEDY = SamplingParams(temperature=0, repetition_penalty=1.0, max_new_tokens=64)


def _replies(lm, backend) -> list[tuple[list[int], list[int], int, int]]:
    out = []
    for text in PROMPTS:
        ids = list(build_prompt(lm.tokenizer, [ChatMessage("user", text)],
                                lm.info.context_length, GREEDY.max_new_tokens).input_ids)
        got = []
        for drafter in (None, LookupDrafter([])):
            cache = PromptCache()
            last = list(stream_backend(backend, lm.tokenizer, ids, GREEDY, prompt_cache=cache,
                                       drafter=drafter))[-1]
            got.append((cache.tokens[len(ids):], last))
            cache.reset()
        (plain, _), (spec, last) = got
        out.append((plain, spec, last.drafted, last.accepted))
    return out


def _check(results) -> None:
    for plain, spec, _drafted, _accepted in results:
        assert spec == plain
    _, _, drafted, accepted = results[0]  # the rewrite quotes its input: drafts are kept
    assert accepted > 10 and drafted >= accepted


def test_transformers_lookup_is_exact_on_the_default_model(default_model_dir: Path) -> None:
    from slmchat.engine import runtimes

    lm = runtimes.load(ModelSpec(path=str(default_model_dir), device="cpu",
                                 runtime="transformers"))
    _check(_replies(lm, runtimes.backend_for(lm)))


def test_onnx_lookup_is_exact_on_the_default_model(default_model_dir: Path) -> None:
    """The default runtime: where this machine computes a position's logits the same in
    every forward of two or more positions (backends/onnx.exact_rows), the decode loop
    runs no one-position forward, and lookup replies are the plain ones token for token."""
    from slmchat.engine import runtimes
    from slmchat.engine.generation.backends.onnx import exact_rows

    lm = runtimes.load(ModelSpec(path=str(default_model_dir), device="cpu", runtime="onnx"))
    if not exact_rows(lm.model):
        pytest.skip("this CPU's ONNX Runtime kernels give a position different logits in "
                    "forwards of different widths; onnx does not speculate here")
    assert runtimes.runtime_of(lm.info).speculates(lm)
    _check(_replies(lm, runtimes.backend_for(lm)))


def test_llamacpp_verification_is_llamacpps_own_batch_and_rewinds_exactly() -> None:
    """On llama.cpp a verified draft is scored by one batch: its rows are what llama.cpp's
    own batched eval gives, and a rewind leaves the state a fresh one fed the kept
    tokens would have. (Batched rows are not bit-identical to one-token steps there, so
    the runtime does not speculate under ``auto``: Runtime.speculates.)"""
    import numpy as np

    pytest.importorskip("llama_cpp")
    from slmchat.engine import runtimes
    from slmchat.engine.model.default import gguf_path

    lm = runtimes.load(ModelSpec(path=str(gguf_path())))
    assert not runtimes.runtime_of(lm.info).speculates(lm)
    backend = runtimes.backend_for(lm)
    ids = list(build_prompt(lm.tokenizer, [ChatMessage("user", PROMPTS[0])],
                            lm.info.context_length, 32).input_ids)
    draft = lm.tokenizer(" Our team finished the migration")["input_ids"]
    state = backend.new_state()
    state.reserve(len(ids) + 64)
    state.extend(ids)
    rows = state.score(draft)
    assert rows.shape == (len(draft), lm.model.n_vocab) and state.tokens == ids + draft
    assert state.rewind(len(ids) + 2) == len(ids) + 2  # drafts 3.. rejected
    after = state.extend(draft[2:4])
    state.close()
    fresh = backend.new_state()
    fresh.reserve(len(ids) + 64)
    fresh.extend(ids)
    batch = fresh.extend(draft)  # llama.cpp's own batched eval of the same tokens
    np.testing.assert_array_equal(rows[-1], batch[0])
    fresh.rewind(len(ids))
    fresh.extend(draft[:2])
    again = fresh.extend(draft[2:4])
    fresh.close()
    np.testing.assert_allclose(after, again, atol=1e-5)


def test_llamacpp_lookup_reply_is_plain_up_to_batch_rounding() -> None:
    """Greedy with lookup on llama.cpp: the quoting reply keeps most drafts and its
    opening matches the plain reply (a later near-tie may flip under batch rounding)."""
    pytest.importorskip("llama_cpp")
    from slmchat.engine import runtimes
    from slmchat.engine.model.default import gguf_path

    lm = runtimes.load(ModelSpec(path=str(gguf_path())))
    results = _replies(lm, runtimes.backend_for(lm))
    plain, spec, drafted, accepted = results[0]
    assert accepted > 10 and drafted >= accepted
    assert spec[:16] == plain[:16]
