from __future__ import annotations

import pytest
import torch

from slmchat.engine import devices


def test_chat_threads_halve_while_a_finetune_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    monkeypatch.delenv("SLMCHAT_THREADS", raising=False)
    monkeypatch.setattr(devices, "physical_cores", lambda: 4)
    try:
        monkeypatch.setattr(devices, "training_processes", lambda: 0)
        assert devices.chat_threads() == 4 and torch.get_num_threads() == 4
        monkeypatch.setattr(devices, "training_processes", lambda: 1)
        assert devices.chat_threads() == 2 and torch.get_num_threads() == 2
        monkeypatch.setenv("SLMCHAT_THREADS", "1")
        assert devices.chat_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_device_and_dtype_resolution() -> None:
    assert devices.resolve_device("cpu") == "cpu"
    assert devices.resolve_dtype("auto", "cpu") == torch.float32
    assert devices.resolve_dtype("bf16", "cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="unknown device"):
        devices.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            devices.resolve_device("cuda")
