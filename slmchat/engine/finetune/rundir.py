"""A fine-tune run folder: everything needed to watch, re-attach to, or resume a run.

Layout (all JSON written atomically: temp file + rename)::

    RUN_DIR/
      args.json          TrainArgs as a dict (the job reads only this)
      status.json        {"state": running|done|failed|cancelled, "pid", "step", ...}
      progress.jsonl     one row per optimizer step (PROGRESS_KEYS), plus eval rows
      checkpoints/step-00000040/   trainable weights, optimizer state, state.json
      train.log          stdout/stderr of the background process

A run whose status says "running" but whose process is gone (killed, machine rebooted)
is reported as state "dead" so the UI can offer a resume instead of a frozen bar.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmchat.engine.fsutil import write_json_atomic, write_text_atomic

ARGS = "args.json"
STATUS = "status.json"
PROGRESS = "progress.jsonl"
CHECKPOINTS = "checkpoints"
LOG = "train.log"
CANCEL = "cancel.request"
STATES = ("pending", "running", "done", "failed", "cancelled")
START_GRACE_S = 30.0
RESERVE_ENV = "SLMCHAT_TRAIN_RESERVE_CORES"  # cores a background job leaves to the chat
PROGRESS_KEYS = (
    "step", "total_steps", "epoch", "loss", "eval_loss", "perplexity", "lr",
    "tokens_per_s", "elapsed_s", "eta_s", "pref_share", "reward_accuracy",
)


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def new_run_dir(hint: str, root: Path | None = None) -> Path:
    """A fresh, uniquely named folder under the runs dir (``20250101-120000-notes``)."""
    if root is None:
        from slmchat.paths import runs_dir

        root = runs_dir()
    stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in hint)[:40] or "run"
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{stem}"
    for i in range(1000):
        path = root / (base if i == 0 else f"{base}-{i}")
        try:
            path.mkdir(parents=True, exist_ok=False, mode=0o700)
            return path
        except FileExistsError:
            continue
    raise OSError(f"cannot create a run folder under {root}")


def read_status(run_dir: Path) -> dict[str, Any]:
    return read_json(run_dir / STATUS)


def write_status(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into status.json (adds updated_at)."""
    status = read_status(run_dir)
    status.update(fields)
    status["updated_at"] = time.time()
    write_json_atomic(run_dir / STATUS, status)
    return status


def append_progress(run_dir: Path, row: dict[str, Any]) -> None:
    full = {key: row.get(key) for key in PROGRESS_KEYS}
    with (run_dir / PROGRESS).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(full) + "\n")
        fh.flush()


def read_progress(run_dir: Path) -> list[dict[str, Any]]:
    return ProgressReader(run_dir).read_new()


def truncate_progress(run_dir: Path, last_step: int) -> None:
    """Drop rows after ``last_step`` (logged after the checkpoint a resume starts from)."""
    rows = [r for r in read_progress(run_dir) if int(r.get("step") or 0) <= last_step]
    write_text_atomic(run_dir / PROGRESS, "".join(json.dumps(r) + "\n" for r in rows))


class ProgressReader:
    """Incremental reader of progress.jsonl: returns only complete, new rows each call.

    A row being written while we read (no trailing newline yet) is left for next time.
    If the file shrinks (a resume truncated it) the reader starts over; ``reset`` tells
    the caller to clear what it plotted.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / PROGRESS
        self.offset = 0
        self.reset = False

    def read_new(self) -> list[dict[str, Any]]:
        self.reset = False
        try:
            size = self.path.stat().st_size
        except OSError:
            return []
        if size < self.offset:
            self.offset = 0
            self.reset = True
        if size == self.offset:
            return []
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read(size - self.offset)
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        rows = []
        for line in chunk[:end].splitlines():
            with contextlib.suppress(json.JSONDecodeError, UnicodeDecodeError):
                row = json.loads(line)
                if isinstance(row, dict):
                    rows.append(row)
        return rows


def pid_alive(pid: int | None) -> bool:
    """True if ``pid`` is a live process (zombies count as dead)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        with contextlib.suppress(OSError, IndexError):
            # Field 3 is the state; "Z" is a zombie waiting to be reaped.
            if stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return False
    return True


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (step, path), oldest first. Temp folders are ignored."""
    root = run_dir / CHECKPOINTS
    out = []
    if root.is_dir():
        for path in root.iterdir():
            if path.name.startswith("step-") and (path / "state.json").is_file():
                with contextlib.suppress(ValueError):
                    out.append((int(path.name[5:]), path))
    return sorted(out)


def latest_checkpoint(run_dir: Path) -> tuple[int, Path] | None:
    found = checkpoints(run_dir)
    return found[-1] if found else None


@dataclass
class RunSummary:
    """What a list of runs or a re-attaching panel needs to know about one run."""

    path: Path
    state: str  # STATES + "dead" (status says running, process is gone)
    step: int = 0
    total_steps: int = 0
    data: str = ""
    model: str = ""
    method: str = ""
    out: str = ""
    message: str = ""
    pid: int | None = None
    started_at: float = 0.0
    updated_at: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    # The data's numbers as the run prepared them (DataPreview.as_dict): blocks, the
    # held-out end's tokens, eval_warning.
    data_stats: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled", "dead")

    @property
    def resumable(self) -> bool:
        return self.state in ("failed", "cancelled", "dead", "pending")


def summarize(run_dir: Path) -> RunSummary:
    status = read_status(run_dir)
    args = read_json(run_dir / ARGS)
    state = str(status.get("state") or "pending")
    pid = status.get("pid")
    starting = pid is None and time.time() - float(status.get("updated_at") or 0) < START_GRACE_S
    if state == "running" and not starting and not pid_alive(pid):
        state = "dead"
    message = str(status.get("message") or "")
    if state == "dead":  # the last message ("step 12/40") is stale
        message = (f"the training process stopped unexpectedly at step "
                   f"{int(status.get('step') or 0)}; resume it to continue")
    return RunSummary(
        path=run_dir, state=state, step=int(status.get("step") or 0),
        total_steps=int(status.get("total_steps") or 0), data=str(args.get("data", "")),
        model=str(args.get("model", "")), method=str(args.get("method", "")),
        out=str(status.get("out") or args.get("out") or ""), message=message, pid=pid,
        started_at=float(status.get("started_at") or 0.0),
        updated_at=float(status.get("updated_at") or 0.0),
        metrics=dict(status.get("metrics") or {}),
        data_stats=dict(status.get("data") or {}),
    )


def list_runs(root: Path | None = None) -> list[RunSummary]:
    """All runs (folders with args.json), newest first."""
    if root is None:
        from slmchat.paths import runs_dir

        root = runs_dir()
    if not root.is_dir():
        return []
    runs = [summarize(p) for p in root.iterdir() if (p / ARGS).is_file()]
    return sorted(runs, key=lambda r: (r.started_at or r.path.stat().st_mtime, r.name),
                  reverse=True)


OVERFIT_NATS = 0.1  # held-out loss this far above its best (perplexity +10.5 %)


def overfitting_warning(eval_losses: list[tuple[int, float]]) -> str | None:
    """A warning when the last held-out loss rose well above its best, or None.

    ``eval_losses`` are (step, loss) in step order; step 0 is the score before training.
    """
    if len(eval_losses) < 2:
        return None
    best_step, best = min(eval_losses, key=lambda p: p[1])
    step, last = eval_losses[-1]
    if last - best < OVERFIT_NATS:
        return None
    where = "before training" if best_step == 0 else f"at step {best_step}"
    return (f"held-out loss rose from {best:.3f} ({where}) to {last:.3f} at step {step}: "
            "the model is overfitting its training text and may answer worse than "
            + ("the base" if best_step == 0 else "it did then"))


def request_cancel(run_dir: Path) -> bool:
    """Ask a run to stop: it saves a checkpoint and ends as "cancelled".

    The cancel file is the portable signal (and survives a process that has not yet
    installed its handler); SIGTERM wakes it sooner. Returns whether a live process
    was signalled.
    """
    (run_dir / CANCEL).write_text(str(time.time()))
    pid = read_status(run_dir).get("pid")
    if isinstance(pid, int) and pid_alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
            return True
    return False


def cancel_requested(run_dir: Path) -> bool:
    return (run_dir / CANCEL).exists()


def spawn(run_dir: Path) -> subprocess.Popen[bytes]:
    """Start ``python -m slmchat.engine.finetune RUN_DIR`` as its own session, so it keeps
    running when the app (or the terminal) that started it goes away."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    # OpenMP threads that spin while waiting make a job ~10x slower when it shares the
    # cores with the app or anything else (measured on 2 contended cores); sleep instead.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # A background job shares the machine with the chat: it leaves one core free
    # (devices.chat_threads gives the chat half the cores while a job runs).
    env.setdefault(RESERVE_ENV, "1")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", "slmchat.engine.finetune", str(run_dir)]
    # "running" without a pid yet: summarize() gives it a grace period to start.
    (run_dir / CANCEL).unlink(missing_ok=True)
    write_status(run_dir, state="running", pid=None, message="starting")
    with (run_dir / LOG).open("ab") as log:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env=env, cwd=str(run_dir),
        )
    # Record the pid at once so a panel opened a moment later can attach (the child
    # writes the same pid itself; only fill it in if the child has not yet).
    if read_status(run_dir).get("pid") is None:
        write_status(run_dir, pid=proc.pid)
    return proc


def running_count(root: Path | None = None) -> int:
    """How many runs under ``root`` have a live process now (reads status.json only)."""
    if root is None:
        from slmchat.paths import runs_dir

        root = runs_dir()
    if not root.is_dir():
        return 0
    count = 0
    for run in root.iterdir():
        status = read_json(run / STATUS)
        if status.get("state") == "running" and pid_alive(status.get("pid")):
            count += 1
    return count
