"""Adapter merge, safetensors export, GGUF round trip, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from slmchat.engine.model.loader import load
from slmchat.engine.model.spec import ModelSpec
from slmchat.engine.session import Engine
from slmchat.engine.tools.export import export_model
from slmchat.engine.tools.gguf_writer import VERIFY_PROMPTS, tensor_name
from slmchat.errors import InvalidParameterError, ModelLoadError
from tests.modelkit import make_lora, truncated_copy


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path) -> Path:
    out = make_lora(tiny_llama_dir, tmp_path_factory.mktemp("lora") / "adapter")
    (out.parent / "slmchat-train.json").write_text(json.dumps(
        {"data_sha256": "abc123", "metrics": {"eval_loss": 1.5}, "lr": 1e-4}))
    return out


def _logits(model, tok, prompt: str) -> torch.Tensor:
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        return model(input_ids=ids).logits.float()


def test_merge_equals_adapter_applied(adapter_dir: Path, tiny_llama_dir: Path,
                                      tmp_path: Path) -> None:
    applied = load(ModelSpec(path=str(adapter_dir), device="cpu", dtype="fp32"))
    base = load(ModelSpec(path=str(tiny_llama_dir), device="cpu", dtype="fp32"))
    prompt = VERIFY_PROMPTS[0]
    with_adapter = _logits(applied.model, applied.tokenizer, prompt)
    assert (with_adapter - _logits(base.model, base.tokenizer, prompt)).abs().max() > 1e-3
    res = export_model(ModelSpec(path=str(adapter_dir)), out=tmp_path / "merged",
                       merge_adapter=True)
    assert res.merged and res.out is not None
    files = {p.name for p in res.out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= files
    assert "adapter_config.json" not in files
    merged = load(ModelSpec(path=str(res.out), device="cpu", dtype="fp32"))
    assert merged.info.has_chat_template
    assert torch.allclose(_logits(merged.model, merged.tokenizer, prompt), with_adapter,
                          atol=1e-4)
    card = (res.out / "README.md").read_text()
    assert str(tiny_llama_dir) in card and "merged LoRA adapter" in card
    assert "abc123" in card and "eval_loss" in card  # provenance from the run folder


def test_adapter_export_needs_merge_flag(adapter_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="--merge-adapter"):
        export_model(ModelSpec(path=str(adapter_dir)), out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(("gguf_type", "max_diff", "min_top1"),
                         [("f16", 0.01, 1.0), ("q8_0", 0.1, 0.95)])
def test_gguf_round_trip(tiny_llama_dir: Path, tmp_path: Path, gguf_type: str,
                         max_diff: float, min_top1: float) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / f"tiny-{gguf_type}.gguf"
    res = export_model(ModelSpec(path=str(tiny_llama_dir)), gguf=out, gguf_type=gguf_type)
    assert res.gguf == out.resolve() and res.check is not None
    assert res.check.tokens_match and res.check.top1_agreement >= min_top1
    assert res.check.max_abs_diff < max_diff
    # independent check: transformers reads it (tokenizer + chat template from metadata)
    src = load(ModelSpec(path=str(tiny_llama_dir), device="cpu", dtype="fp32"))
    back = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=out.name,
                                                dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(tmp_path), gguf_file=out.name)
    assert tok.chat_template == src.tokenizer.chat_template
    for prompt in VERIFY_PROMPTS:
        a = _logits(src.model, src.tokenizer, prompt)
        b = _logits(back, tok, prompt)
        assert (a - b).abs().max() < max_diff
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temp file left


def test_gguf_metadata_follows_llama_cpp(tiny_llama_dir: Path, tmp_path: Path) -> None:
    from gguf import GGUFReader

    out = tmp_path / "t.gguf"
    export_model(ModelSpec(path=str(tiny_llama_dir)), gguf=out, verify=False)
    reader = GGUFReader(str(out))
    fields = {k: f.contents() for k, f in reader.fields.items()
              if not k.startswith("tokenizer.ggml.") or k.endswith(("model", "pre", "_id"))}
    assert fields["general.architecture"] == "llama"
    assert fields["llama.attention.head_count"] == 4
    assert fields["llama.attention.head_count_kv"] == 2
    assert fields["tokenizer.ggml.model"] == "gpt2"
    names = {t.name for t in reader.tensors}
    assert {"token_embd.weight", "output_norm.weight", "blk.1.attn_q.weight",
            "blk.1.ffn_down.weight"} <= names
    assert "output.weight" not in names  # tied to token_embd, as llama.cpp writes it
    assert tensor_name("model.layers.3.mlp.gate_proj.weight") == "blk.3.ffn_gate.weight"
    assert tensor_name("model.rotary_emb.inv_freq") is None


def test_gguf_refuses_non_llama(tiny_gpt2_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="Llama"):
        export_model(ModelSpec(path=str(tiny_gpt2_dir)), gguf=tmp_path / "g.gguf",
                     out=tmp_path / "folder")
    assert list(tmp_path.iterdir()) == []  # checked before the folder was written


def test_export_bad_inputs(tmp_path: Path, tiny_llama_dir: Path) -> None:
    (tmp_path / "junk").mkdir()
    with pytest.raises(ModelLoadError, match="not a model folder"):
        export_model(ModelSpec(path=str(tmp_path / "junk")), out=tmp_path / "o")
    broken = truncated_copy(tiny_llama_dir, tmp_path / "broken")
    with pytest.raises(ModelLoadError, match="truncated"):
        export_model(ModelSpec(path=str(broken)), out=tmp_path / "o")
    with pytest.raises(InvalidParameterError, match="nothing to do"):
        export_model(ModelSpec(path=str(tiny_llama_dir)))
    with pytest.raises(InvalidParameterError, match=r"\.gguf"):
        export_model(ModelSpec(path=str(tiny_llama_dir)), gguf=tmp_path / "x.bin")
    assert not (tmp_path / "o").exists()


def test_mismatched_adapter_keeps_old_model(adapter_dir: Path, tiny_gpt2_dir: Path,
                                            tiny_llama_dir: Path, tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "bad-adapter"
    shutil.copytree(adapter_dir, bad)
    cfg = json.loads((bad / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(tiny_gpt2_dir)
    (bad / "adapter_config.json").write_text(json.dumps(cfg))
    engine = Engine()
    engine.load(ModelSpec(path=str(tiny_llama_dir), device="cpu"))
    before = engine.info
    with pytest.raises(ModelLoadError) as err:
        engine.load(ModelSpec(path=str(bad), device="cpu"))
    assert "\n" not in str(err.value)
    assert engine.info is before
    with pytest.raises(ModelLoadError):
        export_model(ModelSpec(path=str(bad)), out=tmp_path / "o", merge_adapter=True)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("gguf_type", "file_type"), [("q6_k", 18), ("q5_k_m", 17), ("q4_k_m", 15)])
def test_gguf_k_quants_round_trip_through_llama_cpp(tiny_llama_dir: Path, tmp_path: Path,
                                                     gguf_type: str, file_type: int) -> None:
    """The quantizations users run in Ollama and LM Studio, made by llama.cpp's quantizer;
    llama.cpp loads the file and its logits follow the source model."""
    pytest.importorskip("llama_cpp")
    import numpy as np

    from slmchat.engine.model.gguf_header import read_header
    from slmchat.engine.model.llamacpp import LlamaCppModel, LlamaCppTokenizer

    out = tmp_path / f"tiny-{gguf_type}.gguf"
    res = export_model(ModelSpec(path=str(tiny_llama_dir)), gguf=out, gguf_type=gguf_type)
    assert res.check is not None and res.check.tokens_match
    assert read_header(out).meta["general.file_type"] == file_type
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # the f16 step is gone
    src = load(ModelSpec(path=str(tiny_llama_dir), device="cpu", dtype="fp32"))
    model = LlamaCppModel(out, 256, 1)
    tok = LlamaCppTokenizer(model)
    for prompt in VERIFY_PROMPTS:
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        assert ids == src.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        model.llama.reset()
        model.llama._ctx.kv_cache_seq_rm(-1, 0, -1)
        model.llama.eval(ids)
        got = np.ctypeslib.as_array(model.lib.llama_get_logits_ith(model.llama._ctx.ctx, -1),
                                    shape=(model.n_vocab,))
        want = _logits(src.model, src.tokenizer, prompt)[0, -1].numpy()
        assert np.corrcoef(want, got)[0, 1] > 0.95
