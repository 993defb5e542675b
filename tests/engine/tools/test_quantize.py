"""cpu-int8, bitsandbytes 8/4-bit quantize-save-reload, perplexity, bad outputs."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

from slmchat.engine.model.files import is_cpu_int8_checkpoint
from slmchat.engine.model.int8 import CPU_INT8_WEIGHTS, apply_cpu_int8
from slmchat.engine.model.loader import load
from slmchat.engine.model.spec import ModelSpec
from slmchat.engine.runtimes import load as chat_load
from slmchat.engine.tools.perplexity import perplexity, read_text
from slmchat.engine.tools.quantize import quantize_and_save
from slmchat.errors import DataError, InvalidParameterError, ModelLoadError
from tests.tinymodels import CORPUS

IDS = torch.tensor([[5, 20, 30, 40, 50, 60, 70]])


def _logits(lm) -> torch.Tensor:
    with torch.inference_mode():
        return lm.model(input_ids=IDS).logits.float()


@pytest.fixture(scope="module")
def ref_logits(tiny_llama_dir: Path) -> torch.Tensor:
    return _logits(load(ModelSpec(path=str(tiny_llama_dir), dtype="fp32", device="cpu")))


def test_apply_cpu_int8_quantizes_linears_but_down_proj(tiny_llama_dir: Path,
                                                        ref_logits: torch.Tensor) -> None:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    lm = load(ModelSpec(path=str(tiny_llama_dir), device="cpu", quant="cpu-int8"))
    kinds = {n: type(m) for n, m in lm.model.named_modules()}
    assert kinds["model.layers.0.self_attn.q_proj"] is DynamicLinear
    assert kinds["lm_head"] is DynamicLinear
    assert kinds["model.layers.0.mlp.down_proj"] is torch.nn.Linear
    assert lm.info.quant == "cpu-int8"
    out = _logits(lm)
    assert (out - ref_logits).abs().max() < 0.05
    assert apply_cpu_int8(lm.model) is lm.model  # idempotent


def test_cpu_int8_save_reload_is_exact(tiny_llama_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    direct = _logits(load(ModelSpec(path=str(tiny_llama_dir), device="cpu", quant="cpu-int8")))
    res = quantize_and_save(ModelSpec(path=str(tiny_llama_dir)), tmp_path / "q", method="cpu-int8")
    assert is_cpu_int8_checkpoint(res.out) and (res.out / CPU_INT8_WEIGHTS).is_file()
    assert res.size_after < res.size_before
    back = load(ModelSpec(path=str(res.out), device="cpu"))
    assert back.info.quant == "cpu-int8" and back.info.has_chat_template
    assert torch.equal(_logits(back), direct)
    # plain transformers cannot read the format and says so instead of loading noise
    with pytest.raises(OSError):
        AutoModelForCausalLM.from_pretrained(str(res.out))
    with pytest.raises(ModelLoadError, match="cpu-int8 checkpoint"):
        load(ModelSpec(path=str(res.out), device="cpu", quant="8bit"))


@pytest.mark.parametrize(("bits", "tol"), [(8, 0.05), (4, 0.5)])
def test_bnb_quantize_save_reload(tiny_llama_dir: Path, tmp_path: Path,
                                  ref_logits: torch.Tensor, bits: int, tol: float) -> None:
    from transformers import AutoModelForCausalLM

    res = quantize_and_save(ModelSpec(path=str(tiny_llama_dir), device="cpu"), tmp_path / "q",
                            method="bnb", bits=bits)
    assert res.size_after < res.size_before
    back = load(ModelSpec(path=str(res.out), device="cpu"))
    assert back.info.quant == f"{bits}bit"
    assert (_logits(back) - ref_logits).abs().max() < tol
    plain = AutoModelForCausalLM.from_pretrained(str(res.out), device_map={"": "cpu"})
    with torch.inference_mode():
        assert torch.allclose(plain(input_ids=IDS).logits.float(), _logits(back), atol=1e-4)


def test_quantize_bad_arguments(tiny_llama_dir: Path, tmp_path: Path) -> None:
    spec = ModelSpec(path=str(tiny_llama_dir))
    with pytest.raises(InvalidParameterError, match="8-bit only"):
        quantize_and_save(spec, tmp_path / "q", method="cpu-int8", bits=4)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(InvalidParameterError, match="not empty"):
        quantize_and_save(spec, tmp_path / "full", method="cpu-int8")
    (tmp_path / "afile").write_text("")
    with pytest.raises(InvalidParameterError, match="cannot write"):
        quantize_and_save(spec, tmp_path / "afile" / "q", method="cpu-int8")
    with pytest.raises(ModelLoadError, match="does not exist"):
        quantize_and_save(ModelSpec(path=str(tmp_path / "nope")), tmp_path / "q2",
                          method="cpu-int8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "full"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_quantize_read_only_output(tiny_llama_dir: Path, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(InvalidParameterError, match="cannot write"):
            quantize_and_save(ModelSpec(path=str(tiny_llama_dir)), ro / "q", method="cpu-int8")
    finally:
        ro.chmod(0o755)


def test_failed_save_leaves_nothing(tiny_llama_dir: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import slmchat.engine.model.int8 as q

    def fail(*_a: object, **_k: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(q, "save_cpu_int8", fail)
    with pytest.raises(OSError, match="disk full"):
        quantize_and_save(ModelSpec(path=str(tiny_llama_dir)), tmp_path / "q",
                          method="cpu-int8")
    assert list(tmp_path.iterdir()) == []


def test_perplexity_sliding_window_matches_full_pass(tiny_llama_dir: Path) -> None:
    lm = load(ModelSpec(path=str(tiny_llama_dir), device="cpu", dtype="fp32"))
    text = CORPUS[:400]
    n = len(lm.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert 64 < n < 256
    full = perplexity(lm.model, lm.tokenizer, text, window=256, stride=256)
    assert full.tokens == n - 1
    ids = lm.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        loss = lm.model(input_ids=ids, labels=ids).loss
    assert math.isclose(full.perplexity, math.exp(float(loss)), rel_tol=1e-4)
    slid = perplexity(lm.model, lm.tokenizer, text, window=64, stride=32)
    assert slid.tokens == n - 1  # every token scored exactly once
    assert slid.perplexity > full.perplexity * 0.8  # less context, similar (random) model
    assert full.line == f"perplexity={full.perplexity:.4f} tokens={n - 1}"


def test_stepwise_perplexity_equals_the_full_pass(tiny_llama_dir: Path) -> None:
    """The step-by-step scorer (for runtimes with last-token logits) is the same recipe."""
    from slmchat.engine.generation.backends.transformers import TransformersBackend
    from slmchat.engine.tools.perplexity import evaluate, perplexity_stepwise

    lm = load(ModelSpec(path=str(tiny_llama_dir), device="cpu", dtype="fp32", runner="hf"))
    text = CORPUS[:400]
    for window, stride in ((256, 256), (64, 32)):
        ref = perplexity(lm.model, lm.tokenizer, text, window=window, stride=stride)
        step = perplexity_stepwise(TransformersBackend(lm.model, "hf"), lm.tokenizer, text, window=window,
                                   stride=stride)
        assert step.tokens == ref.tokens
        assert math.isclose(step.perplexity, ref.perplexity, rel_tol=1e-4)
    onnx_lm = chat_load(ModelSpec(path=str(tiny_llama_dir)))
    assert onnx_lm.info.runtime == "onnx"
    int8 = evaluate(onnx_lm, text, window=64, stride=32)
    assert int8.tokens == ref.tokens and math.isclose(int8.perplexity, ref.perplexity, rel_tol=0.02)


def test_read_text_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_text(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(DataError, match="empty"):
        read_text(tmp_path / "empty.txt")
    (tmp_path / "bin.dat").write_bytes(b"\x00\x01\x02binary")
    with pytest.raises(DataError, match="binary"):
        read_text(tmp_path / "bin.dat")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(DataError, match="UTF-8"):
        read_text(tmp_path / "latin1.txt")


@pytest.mark.realmodel
@pytest.mark.parametrize("method,bits", [("cpu-int8", 8), ("bnb", 8), ("bnb", 4)])
def test_default_model_quantize_save_reload(default_model_dir: Path, tmp_path: Path,
                                            method: str, bits: int) -> None:
    text = CORPUS[:600]
    ref = load(ModelSpec(path=str(default_model_dir), device="cpu", dtype="fp32"))
    before = perplexity(ref.model, ref.tokenizer, text, max_tokens=96)
    del ref
    res = quantize_and_save(ModelSpec(path=str(default_model_dir), device="cpu"),
                            tmp_path / "q", method=method, bits=bits)
    # cpu-int8 keeps embeddings and down_proj in fp32
    assert res.size_after < (0.65 if method == "cpu-int8" else 0.5) * res.size_before
    back = load(ModelSpec(path=str(res.out), device="cpu"))
    assert back.info.quant == ("cpu-int8" if method == "cpu-int8" else f"{bits}bit")
    after = perplexity(back.model, back.tokenizer, text, max_tokens=96)
    assert after.tokens == before.tokens
    assert after.perplexity < 2.0 * before.perplexity
