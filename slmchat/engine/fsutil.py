"""Writing model folders safely: a temp folder next to the target, renamed on success.

A quantized copy or an export is either complete or absent; a crash, a full disk or a
Ctrl-C never leaves a half-written checkpoint that discovery would list as a model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from slmchat.errors import InvalidParameterError


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


@contextmanager
def atomic_dir(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp folder; on success it replaces ``out``, on any error it is deleted."""
    out = out.expanduser().resolve()
    check_target(out, overwrite)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as exc:
        raise InvalidParameterError(f"cannot write to {out.parent}: {exc.strerror or exc}") from exc
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp, out)
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
        # keep the suffix: loaders (transformers for .gguf) look at it
        fd, name = tempfile.mkstemp(prefix=f".{out.stem}.tmp-", suffix=out.suffix,
                                    dir=out.parent)
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


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
