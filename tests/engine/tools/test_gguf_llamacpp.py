"""An exported GGUF runs in llama.cpp itself (only where llama-cpp-python is installed;
it is an optional peer, never a dependency, so CI normally skips this)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.realmodel
ROOT = Path(__file__).resolve().parents[2]


def test_exported_default_model_answers_in_llama_cpp(default_model_dir: Path, tmp_path: Path) -> None:
    gguf = tmp_path / "smol-f16.gguf"
    proc = subprocess.run(
        [sys.executable, "-m", "slmchat", "export", str(default_model_dir), "--out",
         str(tmp_path / "out"), "--gguf", str(gguf)],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_threads=2, n_ctx=512, verbose=False)
    out = llm.create_chat_completion(
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0, max_tokens=24)
    assert "Paris" in out["choices"][0]["message"]["content"]
