"""Discovery over a temp folder holding one tiny checkpoint of each kind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from slmchat.config import Settings
from slmchat.engine.model.discovery import ModelEntry, discover, estimate_memory, filter_entries, scan_folder
from slmchat.engine.model.spec import ModelSpec
from tests.modelkit import fake_hf_cache, make_lora, truncated_copy

TINY_LLAMA_PARAMS = None  # filled from the model itself in the fixture


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path,
        tiny_gpt2_dir: Path) -> Path:
    """A folder with: llama, gpt2, lora, gguf, cpu-int8, bnb-4bit, truncated, junk."""
    from slmchat.engine.tools.export import export_model
    from slmchat.engine.tools.quantize import quantize_and_save

    root = tmp_path_factory.mktemp("zoo")
    shutil.copytree(tiny_llama_dir, root / "llama")
    shutil.copytree(tiny_gpt2_dir, root / "nested" / "gpt2")
    make_lora(root / "llama", root / "lora")
    export_model(ModelSpec(path=str(root / "llama")), gguf=root / "llama-f16.gguf")
    quantize_and_save(ModelSpec(path=str(root / "llama")), root / "int8", method="cpu-int8")
    quantize_and_save(ModelSpec(path=str(root / "llama"), device="cpu"), root / "nf4",
                      method="bnb", bits=4)
    truncated_copy(tiny_llama_dir, root / "broken")
    (root / "junk").mkdir()
    (root / "junk" / "notes.txt").write_text("not a model")
    return root


def _by_name(entries: list[ModelEntry]) -> dict[str, ModelEntry]:
    return {e.name: e for e in entries}


def test_scan_finds_each_kind(zoo: Path, tiny_llama_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    n_params = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir)).num_parameters()
    found = _by_name(scan_folder(zoo, "settings"))
    assert set(found) == {"llama", "nested/gpt2", "lora", "llama-f16.gguf", "int8", "nf4",
                          "broken"}
    llama = found["llama"]
    assert (llama.format, llama.architecture) == ("safetensors", "LlamaForCausalLM")
    assert llama.n_params == n_params  # from the safetensors header, tied head counted once
    assert llama.has_chat_template and llama.problem is None
    assert llama.size_bytes > 0 and llama.context_length == 256
    gpt2 = found["nested/gpt2"]
    assert gpt2.architecture == "GPT2LMHeadModel" and not gpt2.has_chat_template
    lora = found["lora"]
    assert lora.format == "lora" and lora.base == str(zoo / "llama")
    assert 0 < lora.n_params < n_params
    gguf = found["llama-f16.gguf"]
    assert (gguf.format, gguf.architecture) == ("gguf", "llama")
    assert gguf.n_params == n_params and gguf.has_chat_template
    assert found["int8"].format == "cpu-int8" and found["int8"].n_params == n_params
    assert found["nf4"].format == "bnb-4bit"
    assert found["nf4"].n_params == pytest.approx(n_params, rel=0.01)
    assert found["broken"].problem and "truncated" in found["broken"].problem


def test_discover_sources_and_dedup(zoo: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from slmchat.paths import models_dir, runs_dir

    run = runs_dir() / "run-1"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copytree(zoo / "lora", run / "final")
    (run / "args.json").write_text("{}")
    shutil.copytree(zoo / "llama", models_dir() / "my-llama")
    cache = tmp_path / "hub"
    fake_hf_cache(cache, "org/tiny", zoo / "nested" / "gpt2")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    settings = Settings()
    settings.model.dirs = [str(zoo), str(zoo)]  # listed twice: still one entry each
    entries = discover(settings, include_default=False)
    sources = {(e.source, e.name) for e in entries}
    assert ("run", "run-1/final") in sources
    assert ("models", "my-llama") in sources
    assert ("hf-cache", "org/tiny") in sources
    assert ("settings", "zoo0/llama") in sources or any(
        s == "settings" and n.endswith("/llama") for s, n in sources)
    paths = [e.path for e in entries]
    assert len(paths) == len(set(paths))
    hf = next(e for e in entries if e.source == "hf-cache")
    assert hf.size_bytes > 0 and hf.architecture == "GPT2LMHeadModel"
    # read-only scan: nothing was created in the cache
    assert sorted(p.name for p in (cache / "models--org--tiny").iterdir()) == [
        "blobs", "refs", "snapshots"]


def test_default_entry_uses_converted_model(default_model_dir: Path) -> None:
    entries = discover(Settings(), include_hf_cache=False)
    default = entries[0]
    assert default.path == "default" and default.source == "default"
    assert default.architecture == "LlamaForCausalLM"
    assert 130e6 < default.n_params < 140e6
    assert default.has_chat_template


def test_filter_entries(zoo: Path) -> None:
    entries = scan_folder(zoo, "settings")
    assert {e.name for e in filter_entries(entries, "GPT2")} == {"nested/gpt2"}
    assert {e.name for e in filter_entries(entries, "lora llama")} == {"lora"}
    assert filter_entries(entries, "") == entries


def test_not_a_model_and_missing_folders(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "config.json").write_text("{not json")
    found = scan_folder(tmp_path, "settings")
    assert len(found) == 1 and found[0].problem == "unreadable config.json"
    assert scan_folder(tmp_path / "missing", "settings") == []
    (tmp_path / "bad.gguf").write_bytes(b"GGUF garbage")
    bad = next(e for e in scan_folder(tmp_path, "settings") if e.format == "gguf")
    assert bad.problem and bad.problem.startswith(("unreadable GGUF", "damaged GGUF file"))


def test_estimate_memory_orders_quantizations(zoo: Path) -> None:
    entry = next(e for e in scan_folder(zoo, "s") if e.name == "llama")
    fp32 = estimate_memory(ModelSpec(path=entry.path, dtype="fp32", device="cpu"), entry)
    bf16 = estimate_memory(ModelSpec(path=entry.path, dtype="bf16", device="cpu"), entry)
    q8 = estimate_memory(ModelSpec(path=entry.path, quant="8bit", device="cpu"), entry)
    q4 = estimate_memory(ModelSpec(path=entry.path, quant="4bit", device="cpu"), entry)
    assert fp32.weights_bytes == pytest.approx(entry.n_params * 4)
    assert fp32.weights_bytes > bf16.weights_bytes > q8.weights_bytes > q4.weights_bytes
    assert fp32.kv_cache_bytes == 2 * 2 * 2 * 16 * 256 * 4  # layers, kv heads, head dim, ctx
    assert fp32.available_bytes is not None and fp32.fits
    lora = next(e for e in scan_folder(zoo, "s") if e.name == "lora")
    with_base = estimate_memory(ModelSpec(path=lora.path, dtype="fp32", device="cpu"), lora, entry)
    assert with_base.weights_bytes > fp32.weights_bytes


def test_discovery_reads_no_weights(zoo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import safetensors.torch

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("discovery must not load weights")

    monkeypatch.setattr(safetensors.torch, "load_file", boom)
    assert scan_folder(zoo, "s")
    cfg = json.loads((zoo / "llama" / "config.json").read_text())
    assert cfg["model_type"] == "llama"
