from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from slmchat.engine import devices


def test_chat_threads_halve_while_a_finetune_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    monkeypatch.delenv("SLMCHAT_THREADS", raising=False)
    monkeypatch.setattr(devices, "physical_cores", lambda: 4)
    try:
        assert devices.chat_threads(training=False) == 4 and torch.get_num_threads() == 4
        assert devices.chat_threads(training=True) == 2 and torch.get_num_threads() == 2
        monkeypatch.setenv("SLMCHAT_THREADS", "1")
        assert devices.chat_threads(training=True) == 1
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


def test_training_watch_scans_run_folders_at_most_once_per_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    import slmchat.engine.session as session

    scans: list[int] = []
    counts = iter([1, 0])

    def count() -> int:
        scans.append(1)
        return next(counts)

    now = [100.0]
    watch = session.TrainingWatch(count, ttl_s=15.0)
    monkeypatch.setattr(session.time, "monotonic", lambda: now[0])
    assert watch.active() and watch.active() and len(scans) == 1  # cached
    now[0] += 16.0
    assert not watch.active() and len(scans) == 2


def test_running_count_reads_live_runs_only(tmp_path: Path) -> None:
    from slmchat.engine.finetune import rundir

    for name, state, pid in (("a", "running", os.getpid()), ("b", "running", 2**22 + 12345),
                             ("c", "done", os.getpid())):
        (tmp_path / name).mkdir()
        rundir.write_json_atomic(tmp_path / name / rundir.STATUS, {"state": state, "pid": pid})
    assert rundir.running_count(tmp_path) == 1


def test_onnx_threads_follow_the_free_cores(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from slmchat.engine import devices

    class Watch(devices.BusyCores):
        def __init__(self, busy: float) -> None:
            super().__init__()
            self.busy = busy

        def others(self, min_window_s: float = 0.1) -> float:
            return self.busy

    monkeypatch.delenv("SLMCHAT_THREADS", raising=False)
    monkeypatch.setattr(devices, "physical_cores", lambda: 4)
    assert devices.onnx_thread_count(Watch(0.0)) == 4
    assert devices.onnx_thread_count(Watch(1.2)) == 3
    assert devices.onnx_thread_count(Watch(7.0)) == 1
    assert devices.onnx_thread_count(Watch(0.0), training=True) == 2
    monkeypatch.setenv("SLMCHAT_THREADS", "3")
    assert devices.onnx_thread_count(Watch(7.0)) == 3


def test_busy_cores_excludes_our_own_work() -> None:
    import time

    from slmchat.engine.devices import BusyCores

    watch = BusyCores()
    watch.prime()
    end = time.process_time() + 0.3
    while time.process_time() < end:  # burn our own CPU: it must not count as "others"
        pass
    assert 0.0 <= watch.others() < 3.0


def test_a_window_too_short_to_read_keeps_the_thread_count(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Between a load and the first reply a few milliseconds pass; the kernel counts CPU
    time in 10 ms ticks, so one tick there reads as a busy core. Such a window gives no
    verdict: the runtime keeps its threads, and the window grows until it can be read."""
    from slmchat.engine import devices

    monkeypatch.delenv("SLMCHAT_THREADS", raising=False)
    monkeypatch.setattr(devices, "physical_cores", lambda: 2)
    clock = [100.0]
    samples = iter([(100.0, 50.0, 1.0), (100.3, 50.03, 1.0)])
    watch = devices.BusyCores()
    monkeypatch.setattr(watch, "_sample", lambda: next(samples))
    monkeypatch.setattr("time.monotonic", lambda: clock[0])
    watch.prime()
    clock[0] = 100.004  # 4 ms later: a tick of someone's 10 ms would read as 2.5 cores
    assert watch.others() is None
    assert devices.onnx_thread_count(watch, current=1) == 1
    assert devices.onnx_thread_count(watch, current=2) == 2
    clock[0] = 100.3  # the same window, now long enough: 0.03 s busy over 0.3 s
    assert watch.others() == pytest.approx(0.1)
    clock[0] = 100.31
    assert devices.onnx_thread_count(watch) == 2  # unknown and no current: the plain count
