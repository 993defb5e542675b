"""The real default model on the onnx runtime: converted once, close to fp32, chats."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from slmchat.engine.generation.prompting import ChatMessage
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model.loader import load
from slmchat.engine.model.spec import ModelSpec
from slmchat.engine.runtimes import backend_for
from slmchat.engine.session import Engine

pytestmark = pytest.mark.realmodel

TEXT = (
    "Licensed under the Apache License, Version 2.0 (the \"License\"); you may not use this "
    "file except in compliance with the License. You may obtain a copy of the License at the "
    "address below. Unless required by applicable law or agreed to in writing, software "
    "distributed under the License is distributed on an \"AS IS\" BASIS, WITHOUT WARRANTIES OR "
    "CONDITIONS OF ANY KIND, either express or implied. See the License for the specific "
    "language governing permissions and limitations under the License. The quick brown fox "
    "jumps over the lazy dog while the capital of France, Paris, sleeps."
)


@pytest.fixture(scope="module")
def engine(default_model_dir: Path) -> Engine:
    eng = Engine(lite=True)
    info = eng.load(ModelSpec(path="default"))
    assert info.runtime == "onnx" and info.kind == "default", info.warnings
    return eng


def test_int8_predicts_like_fp32(engine: Engine, default_model_dir: Path) -> None:
    import torch

    from slmchat.engine.tools.perplexity import evaluate, perplexity

    lm = engine.loaded
    assert lm is not None
    ref = load(ModelSpec(path=str(default_model_dir), dtype="fp32", device="cpu", runner="hf"))
    ids = list(ref.tokenizer(TEXT, add_special_tokens=False)["input_ids"])
    with torch.inference_mode():
        want = ref.model(torch.tensor([ids])).logits[0].argmax(-1).tolist()
    state = backend_for(lm).new_state()
    got = [int(np.argmax(state.extend([t]))) for t in ids]
    agree = sum(a == b for a, b in zip(got, want, strict=True)) / len(ids)
    assert agree > 0.9, agree
    fp32 = perplexity(ref.model, ref.tokenizer, TEXT, window=512, stride=512)
    int8 = evaluate(lm, TEXT, window=512, stride=512)
    assert int8.tokens == fp32.tokens
    # ~120 tokens: a loose bound (the benchmark's 2,000-token figure is the precise one).
    assert math.isclose(int8.perplexity, fp32.perplexity, rel_tol=0.06), (int8, fp32)


def test_chat_answers_and_reuses_the_cache(engine: Engine) -> None:
    p = SamplingParams(temperature=0, max_new_tokens=24)
    msgs = [ChatMessage("user", "What is the capital of France? Answer in one word.")]
    chunks = list(engine.stream_chat(msgs, p))
    reply = "".join(c.text for c in chunks)
    assert "Paris" in reply
    msgs += [ChatMessage("assistant", reply), ChatMessage("user", "And of Germany?")]
    follow = list(engine.stream_chat(msgs, p))
    assert follow[-1].cached_tokens >= chunks[-1].prompt_tokens
    assert follow[-1].finish_reason in ("stop", "length") and "".join(c.text for c in follow).strip()
