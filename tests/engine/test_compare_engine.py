"""The engine side of "Compare with…": a companion engine (shared weights or a second
model after a memory check) and two streams interleaved on one thread."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmchat.engine.generation.interleave import interleave
from slmchat.engine.generation.prompting import ChatMessage
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model import memcheck
from slmchat.engine.model.loader import load
from slmchat.engine.model.spec import ModelSpec
from slmchat.engine.session import Engine
from slmchat.errors import ModelLoadError
from tests.modelkit import make_lora


def test_interleave_schedules() -> None:
    def streams():
        return {"a": iter([1, 2, 3]), "b": iter(["x"]), "c": iter([])}

    assert list(interleave(streams())) == [("a", 1), ("b", "x"), ("a", 2), ("a", 3)]
    assert list(interleave(streams(), "sequential")) == [("a", 1), ("a", 2), ("a", 3),
                                                         ("b", "x")]


@pytest.fixture(scope="module")
def engine(tiny_llama_dir: Path) -> Engine:
    return Engine(load(ModelSpec(path=str(tiny_llama_dir), device="cpu", dtype="fp32")))


def test_same_model_companion_shares_weights_with_its_own_cache(engine: Engine) -> None:
    twin = engine.companion()
    assert twin.loaded is not None and engine.loaded is not None
    assert twin.loaded.model is engine.loaded.model  # no second copy of the weights
    assert twin.loaded.tokenizer is not engine.loaded.tokenizer  # safe in two threads
    params = SamplingParams(temperature=0.0, max_new_tokens=5)
    msgs = [ChatMessage("user", "Where is Paris?")]
    text = {"left": "", "right": ""}

    def run(side: str, eng: Engine) -> None:
        for chunk in eng.stream_chat(msgs, params):
            text[side] += chunk.text

    import threading

    threads = [threading.Thread(target=run, args=("left", engine)),
               threading.Thread(target=run, args=("right", twin))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert text["left"] == text["right"] != ""  # two threads, same weights, own caches
    # Each engine kept its own cache: the next turn reuses a prefix on both.
    follow = [*msgs, ChatMessage("assistant", text["left"]), ChatMessage("user", "Why?")]
    assert engine.preview_prompt(follow, params).cached_tokens > 0
    assert twin.preview_prompt(follow, params).cached_tokens > 0


def test_second_model_loads_beside_the_first(engine: Engine, tiny_llama_dir: Path) -> None:
    spec = ModelSpec(path=str(tiny_llama_dir), device="cpu", dtype="fp32", quant="cpu-int8")
    other = engine.companion(spec)
    assert other.loaded is not engine.loaded and other.info is not None
    assert other.info.quant == "cpu-int8" and engine.info is not None
    assert engine.info.quant == "none"  # the first model is untouched


def test_companion_of_an_empty_engine_loads_alone(tiny_llama_dir: Path) -> None:
    """The fine-tune panel compares base and tuned even before the chat has a model."""
    from slmchat.engine.session import NoModelError

    empty = Engine()
    with pytest.raises(NoModelError):
        empty.companion()  # "the same model": there is none
    other = empty.companion(ModelSpec(path=str(tiny_llama_dir), device="cpu", dtype="fp32"))
    assert other.info is not None and empty.info is None


def test_a_second_model_that_does_not_fit_is_refused(
        engine: Engine, tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    class Tiny:
        available = 50 << 20  # 50 MiB free: less than the runtime overhead alone

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Tiny())
    spec = ModelSpec(path=str(tiny_llama_dir), device="cpu", dtype="fp32", quant="cpu-int8")
    with pytest.raises(ModelLoadError, match=r"would need about .* free beside"):
        engine.companion(spec)
    engine.companion()  # the same weights need nothing more: still allowed


def test_estimates_for_gguf_adapter_and_unknown(tmp_path: Path, tiny_llama_dir: Path) -> None:
    from tests.storekit import write_gguf

    gguf = write_gguf(tmp_path / "m.gguf")
    assert memcheck.estimate_for(ModelSpec(path=str(gguf), device="cpu")) is not None
    lora = make_lora(tiny_llama_dir, tmp_path / "lora")
    with_base = memcheck.estimate_for(ModelSpec(path=str(lora), device="cpu"))
    base = memcheck.estimate_for(ModelSpec(path=str(tiny_llama_dir), device="cpu"))
    assert with_base is not None and base is not None
    assert with_base.weights_bytes > base.weights_bytes
    assert memcheck.estimate_for(ModelSpec(path=str(tmp_path / "nothing"))) is None
    assert memcheck.room_for(ModelSpec(path=str(tmp_path / "nothing"))) is None
