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


def test_other_threads_run_while_a_long_prompt_is_read(engine: Engine) -> None:
    """Issue 26 item 4: the Python module of onnxruntime-genai held the GIL for a whole
    512-token chunk, so the server's event loop (and the app's UI thread) froze for the
    length of a long prefill. Through the C API (onnx_capi) the forward releases it: a
    thread that ticks every millisecond keeps ticking while 2,048 tokens are read. With
    the GIL held it could tick only between chunks (a few times for four chunks)."""
    import threading
    import time

    lm = engine.loaded
    assert lm is not None
    ids = [int(i) for i in np.random.default_rng(1).integers(200, 40000, 2048)]
    state = backend_for(lm).new_state()
    state.reserve(len(ids) + 1)  # the buffer exists before we count
    inside = threading.Event()
    stop = threading.Event()
    ticks: list[int] = []

    def ticker() -> None:
        while not stop.is_set():
            time.sleep(0.001)
            if inside.is_set():
                ticks.append(1)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        inside.set()
        logits = state.extend(ids)
        inside.clear()
    finally:
        stop.set()
        t.join()
    assert logits.shape[-1] >= 49152 and np.isfinite(logits).all()
    assert len(ticks) > 40, f"only {len(ticks)} ticks while 4 chunks were read: the GIL was held"


def test_an_error_inside_onnx_runtime_genai_is_one_line(engine: Engine, tmp_path: Path) -> None:
    from slmchat.engine.model.onnx_capi import Model, OgaError

    with pytest.raises(OgaError) as err:
        Model(tmp_path)  # no genai_config.json
    assert "\n" not in str(err.value) and str(err.value)
