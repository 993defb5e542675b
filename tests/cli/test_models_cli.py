"""`slmchat models / eval / quantize / export` end to end on tiny models (in-process)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from slmchat.cli import main
from tests.modelkit import make_lora, truncated_copy
from tests.tinymodels import CORPUS


@pytest.fixture
def model_root(tmp_path: Path, tiny_llama_dir: Path, tiny_gpt2_dir: Path,
               monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "mymodels"
    shutil.copytree(tiny_llama_dir, root / "llama")
    shutil.copytree(tiny_gpt2_dir, root / "gpt2")
    monkeypatch.setenv("SLMCHAT_MODEL__DIRS", json.dumps([str(root)]))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    return root


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "eval.txt"
    path.write_text(CORPUS[:400])
    return path


def test_models_table_and_json(model_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["NAME", "FORMAT", "ARCH", "PARAMS"]
    assert any("mymodels/llama" in ln and "LlamaForCausalLM" in ln for ln in lines)
    assert main(["models", "--json", "gpt2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in data] == ["mymodels/gpt2"]
    assert data[0]["has_chat_template"] is False and data[0]["n_params"] > 0


def test_eval_prints_last_line(model_root: Path, text_file: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(model_root / "llama"), str(text_file), "--window", "64",
                 "--stride", "32"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"perplexity=\d+\.\d+ tokens=\d+", last)


def test_quantize_reports_size_and_perplexity(model_root: Path, text_file: Path,
                                              tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "q8"
    assert main(["quantize", str(model_root / "llama"), "--bits", "8", "--method", "cpu-int8",
                 "--out", str(out), "--eval-file", str(text_file), "--window", "64"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"size before=\S+ \w+ after=\S+ \w+ ratio=0\.\d+", text)
    before = re.search(r"before: perplexity=([\d.]+)", text)
    after = re.search(r"after: perplexity=([\d.]+)", text)
    assert before and after and abs(float(before[1]) - float(after[1])) < 0.1 * float(before[1])
    assert main(["eval", str(out), str(text_file), "--window", "64"]) == 0


@pytest.mark.parametrize("argv,message", [
    (["quantize", "{llama}", "--bits", "4", "--method", "cpu-int8", "--out", "{tmp}/q"],
     "8-bit only"),
    (["export", "{tmp}/nothing-here", "--out", "{tmp}/o"], "does not exist"),
    (["export", "{junk}", "--out", "{tmp}/o"], "not a model folder"),
    (["eval", "{broken}", "{text}"], "truncated"),
    (["eval", "{llama}", "{tmp}/missing.txt"], "not found"),
    (["export", "{gpt2}", "--gguf", "{tmp}/g.gguf"], "Llama"),
    (["quantize", "{llama}", "--bits", "8", "--out", "{afile}/q"], "cannot write"),
])
def test_bad_inputs_exit_2_with_one_line(
    argv: list[str], message: str, model_root: Path, text_file: Path, tmp_path: Path,
    tiny_llama_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "junk").mkdir()
    (tmp_path / "afile").write_text("")
    truncated_copy(tiny_llama_dir, tmp_path / "broken")
    subs = {"llama": model_root / "llama", "gpt2": model_root / "gpt2", "tmp": tmp_path,
            "junk": tmp_path / "junk", "broken": tmp_path / "broken", "text": text_file,
            "afile": tmp_path / "afile"}
    assert main([a.format(**subs) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([ln for ln in err if ln.startswith("slmchat: error:")]) == 1
    assert message in err[-1] and "Traceback" not in "\n".join(err)


def test_export_merge_and_gguf(model_root: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    adapter = make_lora(model_root / "llama", tmp_path / "adapter")
    out, gguf = tmp_path / "merged", tmp_path / "merged.gguf"
    assert main(["export", str(adapter), "--out", str(out), "--merge-adapter",
                 "--gguf", str(gguf), "--gguf-type", "q8_0"]) == 0
    text = capsys.readouterr().out
    assert "(adapter merged)" in text and "gguf check:" in text and "tokenizer_match=True" in text
    assert (out / "model.safetensors").is_file() and gguf.is_file()
    assert main(["export", str(adapter), "--out", str(out), "--merge-adapter"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_quantize_onnx_int8_writes_a_standalone_copy(model_root: Path, text_file: Path,
                                                      tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "onnx8"
    assert main(["quantize", str(model_root / "llama"), "--method", "onnx-int8", "--out", str(out),
                 "--eval-file", str(text_file), "--window", "64"]) == 0
    text = capsys.readouterr().out
    assert "(onnx-int8, 8-bit)" in text
    before = re.search(r"before: perplexity=([\d.]+)", text)
    after = re.search(r"after: perplexity=([\d.]+)", text)
    assert before and after and abs(float(before[1]) - float(after[1])) < 0.02 * float(before[1])
    assert (out / "README.md").is_file() and (out / "genai_config.json").is_file()
    assert main(["generate", "hi", "--model", str(out), "--max-new-tokens", "3", "--stats"]) == 0
    assert "runtime=onnx precision=int8" in capsys.readouterr().err
    assert main(["eval", str(out), str(text_file), "--window", "64"]) == 0
    assert re.fullmatch(r"perplexity=[\d.]+ tokens=\d+", capsys.readouterr().out.strip().splitlines()[-1])
    from slmchat.engine.model.discovery import inspect_folder

    entry = inspect_folder(out, "models")
    assert entry is not None and entry.format == "onnx-int8" and entry.problem is None
    assert entry.context_length == 256 and entry.has_chat_template
    # Bad uses of the copy: one line each.
    assert main(["generate", "hi", "--model", str(out), "--runtime", "transformers"]) == 2
    assert "onnx runtime only" in capsys.readouterr().err
    (out / "model.onnx.data").write_bytes(b"short")
    assert main(["generate", "hi", "--model", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken ONNX copy" in err[0] and "wrong size" in err[0]


@pytest.mark.parametrize("argv,message", [
    (["quantize", "{llama}", "--bits", "4", "--method", "onnx-int8", "--out", "{tmp}/q"], "8-bit only"),
    (["quantize", "{gpt2}", "--method", "onnx-int8", "--out", "{tmp}/q"], "does not support GPT2"),
    (["quantize", "{llama}", "--out", "{tmp}/q"], "needs --bits"),
])
def test_onnx_quantize_bad_inputs(argv: list[str], message: str, model_root: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    subs = {"llama": model_root / "llama", "gpt2": model_root / "gpt2", "tmp": tmp_path}
    assert main([a.format(**subs) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "q").exists()


def test_models_table_names_a_loras_base_not_its_whole_path(
        model_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 26 #18: a LoRA's FORMAT was "lora on /the/whole/base/path"."""
    make_lora(model_root / "llama", model_root / "llama-lora")
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(ln for ln in lines if ln.startswith("mymodels/llama-lora"))
    cells = row.split()
    assert cells[1:4] == ["lora", "on", "mymodels/llama"], row
    assert main(["models", "--json"]) == 0
    (entry,) = [e for e in json.loads(capsys.readouterr().out) if e["format"] == "lora"]
    assert entry["base"] == str(model_root / "llama")  # the whole path stays in --json

    from slmchat.commands.models import base_name

    hub = "/h/hub/models--HuggingFaceTB--SmolLM2-135M-Instruct/snapshots/0123abcd"
    assert base_name(hub, {}) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert base_name("default", {}) == "default"
