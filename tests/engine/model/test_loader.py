from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from slmchat.engine.model.loader import load
from slmchat.engine.model.spec import ModelSpec
from slmchat.engine.session import Engine
from slmchat.errors import ModelLoadError


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_load_reports_facts(tiny_llama_dir: Path) -> None:
    lm = load(ModelSpec(path=str(tiny_llama_dir), device="cpu"))
    info = lm.info
    assert info.architecture == "LlamaForCausalLM"
    assert info.n_params == sum(p.numel() for p in lm.model.parameters())
    assert info.footprint_bytes > 0 and info.load_time_s > 0
    assert info.context_length == 256
    assert info.has_chat_template is True
    assert info.dtype == "fp32" and info.device == "cpu" and info.quant == "none"
    assert len(info.fingerprint) == 16


def test_dtype_bf16(tiny_llama_dir: Path) -> None:
    lm = load(ModelSpec(path=str(tiny_llama_dir), device="cpu", dtype="bf16"))
    assert lm.info.dtype == "bf16"


def test_missing_path() -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load(ModelSpec(path="/definitely/not/here"))


def test_folder_without_config(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        load(ModelSpec(path=str(tmp_path)))


def test_truncated_safetensors(tiny_llama_dir: Path, tmp_path: Path) -> None:
    bad = _copy(tiny_llama_dir, tmp_path / "bad")
    weights = bad / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="truncated"):
        load(ModelSpec(path=str(bad)))


def test_garbage_safetensors(tiny_llama_dir: Path, tmp_path: Path) -> None:
    bad = _copy(tiny_llama_dir, tmp_path / "bad")
    (bad / "model.safetensors").write_bytes(b"\x00" * 3)
    with pytest.raises(ModelLoadError, match="corrupt"):
        load(ModelSpec(path=str(bad)))


def test_unsupported_architecture(tiny_llama_dir: Path, tmp_path: Path) -> None:
    bad = _copy(tiny_llama_dir, tmp_path / "bad")
    cfg = json.loads((bad / "config.json").read_text())
    cfg["model_type"] = "totally_unknown_arch"
    cfg["architectures"] = ["TotallyUnknownForCausalLM"]
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="cannot load"):
        load(ModelSpec(path=str(bad)))


def test_pickle_weights_refused_without_flag(tiny_llama_dir: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    bad = _copy(tiny_llama_dir, tmp_path / "pkl")
    state = load_file(str(bad / "model.safetensors"))
    (bad / "model.safetensors").unlink()
    torch.save(state, bad / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="pickle"):
        load(ModelSpec(path=str(bad)))


def test_python_files_warn(tiny_llama_dir: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_llama_dir, tmp_path / "py")
    marker = tmp_path / "pwned"
    (folder / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    lm = load(ModelSpec(path=str(folder)))
    assert any("Python files" in w for w in lm.info.warnings)
    assert not marker.exists()


def test_invalid_dtype_and_device(tiny_llama_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="dtype"):
        load(ModelSpec(path=str(tiny_llama_dir), dtype="fp8"))  # type: ignore[arg-type]
    with pytest.raises(ModelLoadError, match="device"):
        load(ModelSpec(path=str(tiny_llama_dir), device="tpu"))


def test_failed_swap_keeps_current_model(tiny_llama_dir: Path, tmp_path: Path) -> None:
    engine = Engine()
    info = engine.load(ModelSpec(path=str(tiny_llama_dir)))
    with pytest.raises(ModelLoadError):
        engine.load(ModelSpec(path=str(tmp_path / "missing")))
    assert engine.info is info


def test_lora_adapter_loads_on_base(tiny_llama_dir: Path, tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    base = load(ModelSpec(path=str(tiny_llama_dir)))
    peft_model = get_peft_model(base.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                       init_lora_weights=False))
    peft_model.save_pretrained(str(tmp_path / "adapter"))
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(tiny_llama_dir)
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps(cfg))
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        expected = peft_model(ids).logits
    # Adapter folder given as the model: its base comes from adapter_config.json.
    lm = load(ModelSpec(path=str(tmp_path / "adapter")))
    assert lm.info.kind == "adapter" and lm.info.adapter
    with torch.no_grad():
        got = lm.model(ids).logits
    assert torch.allclose(got, expected, atol=1e-5)
    # Same adapter given explicitly with --adapter on the base.
    lm2 = load(ModelSpec(path=str(tiny_llama_dir), adapter=str(tmp_path / "adapter")))
    with torch.no_grad():
        assert torch.allclose(lm2.model(ids).logits, expected, atol=1e-5)


def test_adapter_with_mismatched_base(tiny_llama_dir: Path, tiny_gpt2_dir: Path,
                                      tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    base = load(ModelSpec(path=str(tiny_llama_dir)))
    get_peft_model(base.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])) \
        .save_pretrained(str(tmp_path / "adapter"))
    with pytest.raises(ModelLoadError, match="does not fit"):
        load(ModelSpec(path=str(tiny_gpt2_dir), adapter=str(tmp_path / "adapter")))


def test_config_json_is_parsed_once_per_load(tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Format detection, quantization checks and the lite loader share one parse."""
    from slmchat.engine.model import files

    parsed: list[str] = []
    real = files._loads

    def counting(text: str) -> object:
        parsed.append(text)
        return real(text)

    files._parse_json.cache_clear()
    monkeypatch.setattr(files, "_loads", counting)
    load(ModelSpec(path=str(tiny_llama_dir), device="cpu"), lite=True)
    configs = [p for p in parsed if '"num_hidden_layers"' in p]
    assert len(configs) == 1, [p[:60] for p in parsed]
