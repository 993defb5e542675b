"""The run folder: progress reading, status, dead-pid detection, listing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from slmchat.engine.finetune import rundir as runs


def test_progress_reader_returns_only_complete_new_rows(tmp_path: Path) -> None:
    reader = runs.ProgressReader(tmp_path)
    assert reader.read_new() == []
    runs.append_progress(tmp_path, {"step": 1, "loss": 2.0, "extra": "dropped"})
    with (tmp_path / runs.PROGRESS).open("a") as fh:
        fh.write('{"step": 2, "lo')  # a row being written right now
    rows = reader.read_new()
    assert rows == [dict.fromkeys(runs.PROGRESS_KEYS) | {"step": 1, "loss": 2.0}]
    with (tmp_path / runs.PROGRESS).open("a") as fh:
        fh.write('ss": 1.5}\n')
    assert reader.read_new() == [{"step": 2, "loss": 1.5}]
    assert reader.read_new() == []
    runs.truncate_progress(tmp_path, 0)  # a resume dropped rows: the reader starts over
    assert reader.read_new() == [] and reader.reset


def test_dead_pid_is_reported_and_zombies_are_dead(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    time.sleep(0.5)  # exited but not reaped: a zombie
    assert not runs.pid_alive(proc.pid)
    proc.wait()
    (tmp_path / runs.ARGS).write_text(json.dumps({"data": "x", "method": "lora"}))
    runs.write_status(tmp_path, state="running", pid=proc.pid, step=3, total_steps=9)
    s = runs.summarize(tmp_path)
    assert s.state == "dead" and s.resumable and "resume" in s.message
    import os

    runs.write_status(tmp_path, pid=os.getpid())
    assert runs.summarize(tmp_path).state == "running"


def test_list_runs_newest_first(tmp_path: Path) -> None:
    for i, state in enumerate(("done", "failed")):
        d = tmp_path / f"r{i}"
        d.mkdir()
        (d / runs.ARGS).write_text("{}")
        runs.write_status(d, state=state, started_at=1000.0 + i)
    (tmp_path / "junk").mkdir()
    listed = runs.list_runs(tmp_path)
    assert [r.name for r in listed] == ["r1", "r0"]
    assert [r.state for r in listed] == ["failed", "done"]


def test_new_run_dir_is_unique(tmp_path: Path) -> None:
    a = runs.new_run_dir("my notes.txt", tmp_path)
    b = runs.new_run_dir("my notes.txt", tmp_path)
    assert a != b and a.name.endswith("my-notes-txt")


def test_overfitting_warning_when_heldout_loss_rises_well_above_its_best() -> None:
    from slmchat.engine.finetune.rundir import overfitting_warning

    # 60 steps on one block: perplexity 21.6 -> 33.7 (loss 3.073 -> 3.517)
    rising = [(0, 3.073), (20, 3.2), (40, 3.4), (60, 3.517)]
    warning = overfitting_warning(rising)
    assert warning is not None and "3.073 (before training)" in warning
    assert "worse than the base" in warning
    dipped = [(0, 3.0), (10, 2.5), (20, 2.7)]
    assert "at step 10" in (overfitting_warning(dipped) or "")
    assert overfitting_warning([(0, 3.0), (10, 2.5), (20, 2.55)]) is None
    assert overfitting_warning([(0, 3.0)]) is None


def test_the_finetune_process_quiets_library_notices(monkeypatch, tmp_path) -> None:
    """The background process's output is the run's train.log: library notices such as
    bitsandbytes' "pip install kernels" hint (logged on AVX512-BF16 CPUs) stay out of it."""
    import logging
    import warnings

    from slmchat.engine.finetune import __main__ as entry
    from slmchat.engine.finetune import job

    monkeypatch.setattr(logging.getLogger("bitsandbytes"), "level", logging.NOTSET)
    seen: dict[str, object] = {}

    def fake_run_job(run_dir):
        seen["level"] = logging.getLogger("bitsandbytes.backends.cpu.ops").getEffectiveLevel()
        return {"state": "done", "message": "ok"}

    monkeypatch.setattr(job, "run_job", fake_run_job)
    with warnings.catch_warnings():
        assert entry.main([str(tmp_path)]) == 0
    assert seen["level"] == logging.ERROR
