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


def test_llamacpp_lookup_is_exact_on_the_default_gguf() -> None:
    pytest.importorskip("llama_cpp")
    from slmchat.engine import runtimes
    from slmchat.engine.model.default import gguf_path

    lm = runtimes.load(ModelSpec(path=str(gguf_path())))
    _check(_replies(lm, runtimes.backend_for(lm)))
