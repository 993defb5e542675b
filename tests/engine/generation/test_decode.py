from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from slmchat.engine.generation.decode import CancelToken, PromptCache, stream_generate
from slmchat.engine.generation.prompting import ChatMessage, build_prompt
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model.loader import load
from slmchat.engine.model.spec import ModelSpec
from slmchat.engine.session import Engine
from slmchat.errors import InvalidParameterError


def _ids(lm, text: str) -> list[int]:
    return lm.tokenizer(text)["input_ids"]


@pytest.fixture(scope="module")
def llama(tiny_llama_dir: Path):
    return load(ModelSpec(path=str(tiny_llama_dir), device="cpu"))


def test_greedy_is_deterministic_and_matches_hf_generate(llama) -> None:
    import torch

    ids = _ids(llama, "The quick brown fox")
    params = SamplingParams(temperature=0, repetition_penalty=1.0, max_new_tokens=12)
    chunks = list(stream_generate(llama.model, llama.tokenizer, ids, params))
    ours = "".join(c.text for c in chunks)
    ref = llama.model.generate(
        torch.tensor([ids]), max_new_tokens=12, do_sample=False,
        eos_token_id=llama.tokenizer.eos_token_id, pad_token_id=llama.tokenizer.pad_token_id,
    )
    ref_text = llama.tokenizer.decode(ref[0, len(ids):], skip_special_tokens=True)
    assert ours == ref_text
    assert chunks[-1].finish_reason in ("length", "stop")
    assert chunks[-1].prompt_tokens == len(ids)


def test_same_seed_same_text_and_different_seed_differs(llama) -> None:
    ids = _ids(llama, "Paris is")
    def run(seed: int) -> str:
        p = SamplingParams(temperature=1.5, top_k=0, top_p=1.0, max_new_tokens=20, seed=seed)
        return "".join(c.text for c in stream_generate(llama.model, llama.tokenizer, ids, p))
    assert run(1) == run(1)
    assert len({run(s) for s in range(2, 6)}) > 1


def test_length_finish_and_token_count(llama) -> None:
    ids = _ids(llama, "Small")
    p = SamplingParams(temperature=0, max_new_tokens=5)
    last = list(stream_generate(llama.model, llama.tokenizer, ids, p))[-1]
    assert last.new_tokens <= 5
    if last.new_tokens == 5:
        assert last.finish_reason == "length"
    assert last.ttft_s is not None and last.ttft_s > 0


def test_cancel_from_other_thread_stops_within_one_token(llama) -> None:
    ids = _ids(llama, "The")
    cancel = CancelToken()
    p = SamplingParams(temperature=1.0, max_new_tokens=200, seed=0)
    seen = 0
    last = None
    for last in stream_generate(llama.model, llama.tokenizer, ids, p, cancel):
        seen = last.new_tokens
        if seen >= 3 and not cancel.cancelled:
            t = threading.Thread(target=cancel.cancel)
            t.start()
            t.join()
            at_cancel = seen
    assert last is not None and last.finish_reason == "cancelled"
    assert last.new_tokens <= at_cancel + 1


def test_stop_string_truncates_output(llama) -> None:
    ids = _ids(llama, "The quick")
    p = SamplingParams(temperature=0, max_new_tokens=40)
    full = "".join(c.text for c in stream_generate(llama.model, llama.tokenizer, ids, p))
    if len(full) < 4:
        pytest.skip("random model produced too little text")
    stop = full[2:4]
    chunks = list(stream_generate(llama.model, llama.tokenizer, ids, p.__class__(
        temperature=0, max_new_tokens=40, stop=(stop,))))
    out = "".join(c.text for c in chunks)
    assert stop not in out
    assert full.startswith(out)
    assert chunks[-1].finish_reason == "stop"


def test_prefix_cache_reuse_gives_identical_output(llama) -> None:
    tok = llama.tokenizer
    p = SamplingParams(temperature=0, max_new_tokens=8, repetition_penalty=1.0)
    first = _ids(llama, "Paris is the capital of France.")
    second = first + _ids(llama, " Berlin is")
    cache = PromptCache()
    list(stream_generate(llama.model, tok, first, p, prompt_cache=cache))
    reused = list(stream_generate(llama.model, tok, second, p, prompt_cache=cache))
    fresh = list(stream_generate(llama.model, tok, second, p))
    assert reused[-1].cached_tokens >= len(first)
    assert "".join(c.text for c in reused) == "".join(c.text for c in fresh)


@pytest.mark.parametrize("bad", [
    {"temperature": -1}, {"top_p": 0}, {"top_k": -2}, {"max_new_tokens": 0},
    {"repetition_penalty": 0}, {"min_p": 1.5}, {"seed": -3},
])
def test_invalid_params_rejected(bad: dict) -> None:
    with pytest.raises(InvalidParameterError):
        SamplingParams(**bad).validate()


def test_chat_template_and_context_budget(llama) -> None:
    msgs = [ChatMessage("system", "Be brief.")]
    for i in range(30):
        msgs += [ChatMessage("user", f"question {i} about foxes and dogs"),
                 ChatMessage("assistant", f"answer {i} about small models")]
    msgs.append(ChatMessage("user", "last question"))
    prompt = build_prompt(llama.tokenizer, msgs, context_length=256, max_new_tokens=64)
    assert prompt.prompt_tokens <= 256 - 64
    assert prompt.dropped_messages > 0
    assert prompt.format == "template"
    assert "Be brief." in prompt.text and "last question" in prompt.text
    assert "question 0 " not in prompt.text


def test_gpt2_transcript_format_and_save_reload_same_text(tiny_gpt2_dir: Path, tmp_path: Path) -> None:
    lm = load(ModelSpec(path=str(tiny_gpt2_dir), device="cpu"))
    assert not lm.info.has_chat_template
    engine = Engine(lm)
    prompt = engine.preview_prompt([ChatMessage("user", "hello")], SamplingParams(max_new_tokens=8))
    assert prompt.format == "transcript" and prompt.text.endswith("Assistant:")
    assert "\nUser:" in prompt.stop
    p = SamplingParams(temperature=0, max_new_tokens=10)
    ids = _ids(lm, "The quick brown")
    before = "".join(c.text for c in stream_generate(lm.model, lm.tokenizer, ids, p))
    lm.model.save_pretrained(str(tmp_path / "saved"))
    lm.tokenizer.save_pretrained(str(tmp_path / "saved"))
    again = load(ModelSpec(path=str(tmp_path / "saved"), device="cpu"))
    after = "".join(c.text for c in stream_generate(again.model, again.tokenizer, ids, p))
    assert before == after and len(before) > 0


def test_cancel_during_a_long_prefill_frees_the_model_within_one_chunk() -> None:
    """A 2,000-token prompt is fed in PREFILL_CHUNK pieces; a cancel that arrives while the
    first piece runs stops before the next one (a client that left, Esc, Ctrl+C)."""
    import numpy as np

    from slmchat.engine.generation.decode import PREFILL_CHUNK, stream_backend
    from tests.engine.generation.fakes import ScriptedBackend

    cancel = CancelToken()
    fed: list[int] = []

    def extend(ids: Sequence[int]) -> Any:
        fed.append(len(ids))
        cancel.cancel()  # the client leaves while this chunk is computed
        return np.zeros((1, 8), dtype=np.float32)

    chunks = list(stream_backend(ScriptedBackend(extend), None, list(range(2000)),
                                 SamplingParams(temperature=0, max_new_tokens=5), cancel))
    assert fed == [PREFILL_CHUNK]
    assert chunks[-1].finish_reason == "cancelled" and chunks[-1].new_tokens == 0
