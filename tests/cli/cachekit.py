"""Fake cache, data and config folders for the `doctor` and `cache` tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from slmchat.engine.model import default as default_model


def fake_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Point every slmchat folder into ``tmp_path`` (the cache too, unlike isolated_dirs)."""
    dirs = {name: tmp_path / "home" / name for name in ("data", "config", "cache")}
    for name, path in dirs.items():
        path.mkdir(parents=True)
        monkeypatch.setenv(f"SLMCHAT_{name.upper()}_DIR", str(path))
    return dirs


def fake_default_copy(cache: Path, src: Path) -> Path:
    """A converted default model as ensure_default_model leaves it (a tiny model inside)."""
    target = cache / "models" / default_model.MODEL_NAME
    shutil.copytree(src, target)
    (target / default_model.MARKER).write_text(json.dumps({
        "version": default_model.CONVERSION_VERSION, "source": "/wheel/SmolLM2.gguf",
        "source_size": 1, "wheel": default_model.WHEEL}))
    return target


def fake_onnx_copy(cache: Path, name: str = "smol-int8-0123456789abcdef") -> Path:
    """A copy as the ONNX converter writes it: its marker lists every file with its size."""
    target = cache / "onnx" / name
    target.mkdir(parents=True)
    files = {"model.onnx": b"\0" * 2048, "genai_config.json": b'{"model": {}}',
             "tokenizer.json": b"{}"}
    for fname, data in files.items():
        (target / fname).write_bytes(data)
    (target / "slmchat-onnx.json").write_text(json.dumps({
        "recipe": 1, "source": "/models/smol", "files": {k: len(v) for k, v in files.items()}}))
    return target


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
