"""One registry of runtimes, one choice: the auto table, and no runtime rules elsewhere."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from slmchat.engine import runtimes
from slmchat.engine.model.spec import RUNTIMES, ModelSpec
from slmchat.engine.runtimes import Source, candidates, choose
from slmchat.errors import ModelLoadError

ROOT = Path(__file__).resolve().parents[3] / "slmchat"
OWN = ROOT / "engine" / "runtimes"


def test_the_spec_lists_the_registered_runtimes() -> None:
    assert set(RUNTIMES) == {"auto", *runtimes.NAMES}
    for name, runtime in runtimes.REGISTRY.items():
        assert runtime.name == name


def _name_comparisons(source: str, where: str) -> list[str]:
    """Comparisons of something called ``runtime`` with a runtime's name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        names = {c.value for op in operands for c in ast.walk(op)
                 if isinstance(c, ast.Constant) and c.value in runtimes.NAMES}
        text = ast.get_source_segment(source, node) or ""
        if names and "runtime" in text:
            found.append(f"{where}:{node.lineno}: {text}")
    return found


def test_nothing_outside_the_runtime_modules_compares_runtime_names() -> None:
    offenders = [hit for path in sorted(ROOT.rglob("*.py")) if OWN not in path.parents
                 for hit in _name_comparisons(path.read_text(), str(path.relative_to(ROOT.parent)))]
    assert offenders == []


def test_the_check_finds_what_the_old_code_did() -> None:
    old = 'def f(info, spec):\n    a = info.runtime == "onnx"\n    return spec.runtime in ("llamacpp",)\n'
    assert len(_name_comparisons(old, "old.py")) == 2
    assert _name_comparisons('x = kind == "onnx"\n', "kinds.py") == []  # a source kind


def _gguf(tmp_path: Path) -> Source:
    return Source("gguf", tmp_path / "m.gguf")


def test_auto_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtimes.llamacpp.RUNTIME, "unavailable", lambda: None)
    folder = Source("hf", tmp_path)
    cpu = ModelSpec(device="cpu")
    assert choose(cpu, _gguf(tmp_path)).name == "llamacpp"
    assert choose(cpu, folder).name == "onnx"
    assert choose(cpu, Source("default", tmp_path)).name == "onnx"
    assert choose(cpu, Source("onnx", tmp_path)).name == "onnx"
    assert [r.name for r in candidates(cpu, folder)] == ["onnx", "transformers"]
    for spec in (cpu.with_(quant="cpu-int8"), cpu.with_(dtype="bf16"), cpu.with_(runner="hf"),
                 ModelSpec(device="cuda")):
        assert choose(spec, folder).name == "transformers", spec
    # A PEFT adapter on a GGUF base runs dequantized on transformers.
    assert choose(cpu.with_(adapter="/x"), _gguf(tmp_path)).name == "transformers"
    assert choose(cpu.with_(dtype="fp32"), _gguf(tmp_path)).name == "transformers"
    # Explicit runtimes are the only candidate, and say why they cannot run a spec.
    assert choose(cpu.with_(runtime="transformers"), _gguf(tmp_path)).name == "transformers"
    with pytest.raises(ModelLoadError, match="llamacpp runtime cannot run this model: the GGUF copy"):
        choose(cpu.with_(runtime="llamacpp"), folder)
    with pytest.raises(ModelLoadError, match="onnx runtime cannot run this model: it converts"):
        choose(cpu.with_(runtime="onnx"), _gguf(tmp_path))
    with pytest.raises(ModelLoadError, match="ONNX copy"):
        choose(cpu.with_(runtime="transformers"), Source("onnx", tmp_path))


def test_without_llama_cpp_gguf_falls_back_with_one_warning(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtimes.llamacpp.RUNTIME, "unavailable",
                        lambda: "llama-cpp-python is not usable here (ImportError: x)")
    notes: list[str] = []
    assert [r.name for r in candidates(ModelSpec(device="cpu"), _gguf(tmp_path), notes)] == ["transformers"]
    assert notes == ["llama-cpp-python is not usable here (ImportError: x); the GGUF file runs "
                     "dequantized on transformers (slower)"]
    with pytest.raises(ModelLoadError, match="not usable here"):
        choose(ModelSpec(runtime="llamacpp"), _gguf(tmp_path))
    monkeypatch.setattr(runtimes.llamacpp.RUNTIME, "unavailable", lambda: None)
    notes.clear()
    candidates(ModelSpec(device="cpu", adapter="/a"), _gguf(tmp_path), notes)
    assert notes and "LoRA adapters as GGUF files only" in notes[0]
    notes.clear()
    candidates(ModelSpec(device="cpu"), _gguf(tmp_path), notes)
    assert notes == []


def test_switcher_hint_follows_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtimes.llamacpp.RUNTIME, "unavailable", lambda: None)
    assert runtimes.hint("gguf", False) == "llamacpp"
    assert runtimes.hint("onnx-int8", False) == "onnx"
    assert runtimes.hint("safetensors", True) == "onnx (auto)"
    assert runtimes.hint("safetensors", False) == "transformers"
    assert runtimes.hint("cpu-int8", True) == "transformers"
    assert runtimes.hint("gguf", False, ModelSpec(runtime="transformers")) == "transformers"
