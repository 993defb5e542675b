"""Files on disk, safely: atomic folder and file writes, private files, text reading.

A quantized copy, an export, a checkpoint or a settings file is either complete or
absent: it is written under a temp name next to the target and renamed on success, so a
crash, a full disk or a Ctrl-C never leaves a half-written file that looks finished.
This is the one place that does it (fine-tune results, checkpoints, the default model's
conversion, settings, run status and exports all come through here).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from slmchat.errors import DataError, InvalidParameterError

# Text inputs (training data, perplexity files): refuse > 2 GiB; tokens are held in memory.
MAX_TEXT_BYTES = 2 << 30


def dir_size(path: Path) -> int:
    """Bytes on disk of a file or of every file under a folder (symlinks followed)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size
        except OSError:
            continue
    return total


def check_target(out: Path, overwrite: bool = False) -> None:
    """Fail early (before any slow work) when ``out`` cannot be written."""
    if out.exists() and not overwrite and (out.is_file() or any(out.iterdir())):
        raise InvalidParameterError(f"output exists and is not empty: {out} (use --overwrite)")
    parent = out.parent
    probe = parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise InvalidParameterError(f"cannot write to {parent}: permission denied or not a folder")


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# A temp name carries the writer's pid: ``.NAME.tmp-PID-RANDOM``. The next write of NAME
# removes the ones whose process is gone (a killed export or quantize left up to 331 MB).
LEGACY_STALE_S = 3600  # temp names from before the pid was in them: stale after an hour


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, as another user
        return True
    return True


def clean_stale_temps(parent: Path, name: str, suffix: str = "") -> list[Path]:
    """Remove the temp folders and files a killed writer of ``parent/name`` left (see
    atomic_dir, atomic_file); a live writer's are kept. Returns what was removed."""
    import glob
    import time

    head = f".{name}.tmp-"
    removed: list[Path] = []
    try:
        candidates = sorted(parent.glob(f"{glob.escape(head)}*{glob.escape(suffix)}"))
    except OSError:
        return removed
    for path in candidates:
        pid = path.name[len(head):].split("-", 1)[0]
        try:
            if "-" in path.name[len(head):] and pid.isdigit():
                if _pid_alive(int(pid)):
                    continue
            elif time.time() - path.lstat().st_mtime < LEGACY_STALE_S:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            continue  # not ours to remove, or already gone
        removed.append(path)
    return removed


@contextmanager
def atomic_dir(out: Path, overwrite: bool = False, durable: bool = False) -> Iterator[Path]:
    """Yield a temp folder; on success it replaces ``out``, on any error it is deleted.

    ``durable``: fsync the folder's files' parent before and after the rename (training
    checkpoints, which a resume after a power cut must find whole)."""
    out = out.expanduser().resolve()
    check_target(out, overwrite)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(out.parent, out.name)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    except OSError as exc:
        raise InvalidParameterError(f"cannot write to {out.parent}: {exc.strerror or exc}") from exc
    try:
        yield tmp
        if durable:
            fsync_dir(tmp)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp, out)
        if durable:
            fsync_dir(out.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_file(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp file path next to ``out``; renamed onto ``out`` on success."""
    out = out.expanduser().resolve()
    if out.exists() and not overwrite:
        raise InvalidParameterError(f"output exists: {out} (use --overwrite)")
    check_target(out, overwrite=True)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(out.parent, out.stem, out.suffix)
        # keep the suffix: loaders (transformers for .gguf) look at it
        fd, name = tempfile.mkstemp(prefix=f".{out.stem}.tmp-{os.getpid()}-",
                                    suffix=out.suffix, dir=out.parent)
    except OSError as exc:
        raise InvalidParameterError(f"cannot write to {out.parent}: {exc.strerror or exc}") from exc
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: Path, text: str, private: bool = False) -> Path:
    """Replace ``path`` with ``text`` in one rename, fsynced; ``private``: mode 0600."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str))


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically with mode 0600 (exports hold private text)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, text, private=True)


def read_text_file(path: Path, what: str = "text file", max_bytes: int = MAX_TEXT_BYTES) -> str:
    """Read a UTF-8 text file (a BOM is dropped), refusing missing, oversized, binary and
    non-UTF-8 files with a one-line DataError. The one reader for training data and
    perplexity files."""
    path = path.expanduser()
    if not path.exists():
        raise DataError(f"{what} not found: {path}")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise DataError(f"{path} is {size / 2**30:.1f} GiB; the limit is {max_bytes / 2**30:.0f} GiB")
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if b"\x00" in raw[:65536]:
        raise DataError(f"{path} looks binary (it contains NUL bytes); give a UTF-8 text file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not valid UTF-8 (bad byte at offset {exc.start}); "
            "convert it first, e.g. iconv -f latin1 -t utf-8"
        ) from exc


# ---------------------------------------------------------------- cached copies in use
# A process that uses a cached copy (the converted default model, an ONNX copy) holds a
# shared lock on ``.<name>.inuse`` beside it until it exits; ``slmchat cache clear`` takes
# the exclusive lock before removing a copy, so it skips copies that a running app uses and
# an app starting meanwhile waits for the removal instead of loading a half-deleted folder.
# The lock file's mtime is the copy's last use.
_held: dict[Path, int] = {}


def in_use_lock(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.inuse"


def hold_in_use(folder: Path) -> None:
    """Mark ``folder`` as used by this process (until it exits) and record the use."""
    lock = in_use_lock(folder)
    if folder not in _held:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits while a clear removes this copy
        _held[folder] = fd
    os.utime(lock)


def is_in_use(folder: Path) -> bool:
    """Whether a process holds ``folder`` in use now (creates nothing)."""
    try:
        fd = os.open(in_use_lock(folder), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases our own probe lock
    return False


@contextmanager
def exclusive_use(folder: Path) -> Iterator[bool]:
    """Yield True while no process uses ``folder`` and none can start to (a starting
    one waits), or False at once when one uses it. The lock file is removed with the
    copy when the caller deletes it while holding True."""
    lock = in_use_lock(folder)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
