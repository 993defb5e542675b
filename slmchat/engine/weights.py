"""Checkpoint files on disk: which weights a folder holds, and whether they are whole.

Checked before transformers sees a folder, so a truncated copy or a pickle file gets a
clear message instead of a stack trace deep inside a loader.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from slmchat.errors import ModelLoadError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def fingerprint(files: list[Path]) -> str:
    """A fast content fingerprint: names, sizes and the first/last MiB of each file.

    Hashing every byte of a multi-GB checkpoint on every load would cost seconds; this
    still changes whenever weights are rewritten (safetensors headers hold offsets, and
    the tensors at both ends change with any retrain).
    """
    digest = hashlib.sha256()
    for path in sorted(files):
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with path.open("rb") as fh:
            digest.update(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(-(1 << 20), 2)
                digest.update(fh.read(1 << 20))
    return digest.hexdigest()[:16]


def weight_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(safetensors files, pickle-format files) in a checkpoint folder."""
    safe = sorted(folder.glob("*.safetensors"))
    pickled = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    return safe, pickled


def check_safetensors(files: list[Path]) -> None:
    """Raise ModelLoadError when a safetensors file is truncated or corrupt.

    Reads only headers and compares the declared tensor extent with the file size, so
    a partly copied checkpoint is caught before transformers sees it.
    """
    for path in files:
        try:
            with path.open("rb") as fh:
                raw = fh.read(8)
                if len(raw) < 8:
                    raise ValueError("file shorter than its header")
                header_len = int.from_bytes(raw, "little")
                if header_len > 100_000_000:
                    raise ValueError("header length is implausible")
                header = json.loads(fh.read(header_len))
            end = max(
                (v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"),
                default=0,
            )
            if path.stat().st_size < 8 + header_len + end:
                raise ValueError("truncated: the file is shorter than its tensors")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise ModelLoadError(f"corrupt weights file {path}: {exc}") from exc


def has_python_files(folder: Path) -> bool:
    return any(folder.glob("*.py"))
