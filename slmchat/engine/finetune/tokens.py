"""Tokenised training data on disk: a token-id file written once, read as a memory map.

``data.prepare_data`` tokenises the data once into a folder of the token cache
(``DATA_DIR/finetune-tokens/<key>/``: ``ids.bin``, ``mask.bin`` for masked chat rows,
``meta.json``), keyed by the data's content hash, the tokenizer and the masking choice, so
the preview and the run (a separate process) share it. Blocks are views over the map
(``Blocks``), so memory does not grow with the data; only the pages a step touches are read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

FORMAT = 2  # bump when the way ids are produced or described changes (2: doc_ends)
KEEP = 4  # cached tokenisations kept (newest used first)
IDS, MASK, META = "ids.bin", "mask.bin", "meta.json"


def cache_root() -> Path:
    from slmchat.paths import data_dir

    root = data_dir() / "finetune-tokens"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """What decides the ids: the tokenizer's full definition, EOS and chat template."""
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    digest.update(repr((tokenizer.eos_token_id, getattr(tokenizer, "chat_template", None),
                        len(tokenizer))).encode())
    return digest.hexdigest()


def cache_key(data_sha: str, tokenizer: Any, masked: bool) -> str:
    text = f"{FORMAT}\0{data_sha}\0{tokenizer_fingerprint(tokenizer)}\0{int(masked)}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def id_dtype(tokenizer: Any) -> np.dtype[Any]:
    n = max(len(tokenizer), int(getattr(tokenizer, "vocab_size", 0) or 0))
    return np.dtype(np.uint16 if n <= 1 << 16 else np.uint32)


class TokenWriter:
    """Appends ids (and an optional 0/1 loss mask) to files in a temp folder; ``commit``
    renames it into the cache, ``discard`` removes it. Memory: only what is buffered."""

    def __init__(self, key: str, dtype: np.dtype[Any], masked: bool) -> None:
        self.final = cache_root() / key
        self.tmp = cache_root() / f".{key}.{os.getpid()}.tmp"
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir()
        self.dtype = dtype
        self.count = 0
        self.mask_sum = 0
        self._ids = open(self.tmp / IDS, "wb")  # noqa: SIM115 - closed in commit/discard
        self._mask = open(self.tmp / MASK, "wb") if masked else None  # noqa: SIM115
        self._limit = np.iinfo(dtype).max

    def add(self, ids: Iterable[int], n: int, mask: Iterable[int] | None = None) -> None:
        arr = np.fromiter(ids, dtype=np.int64, count=n)
        if n and (int(arr.max()) > self._limit or int(arr.min()) < 0):
            raise ValueError(f"token id out of range for {self.dtype}")
        self._ids.write(arr.astype(self.dtype).tobytes())
        if self._mask is not None:
            m = (np.ones(n, dtype=np.uint8) if mask is None
                 else np.fromiter(mask, dtype=np.uint8, count=n))
            self._mask.write(m.tobytes())
            self.mask_sum += int(m.sum(dtype=np.int64))
        self.count += n

    def truncate(self, count: int) -> None:
        """Drop everything after the first ``count`` tokens (a file that turned out blank)."""
        self._ids.flush()
        self._ids.truncate(count * self.dtype.itemsize)
        self._ids.seek(0, os.SEEK_END)
        if self._mask is not None:
            self._mask.flush()
            self._mask.truncate(count)
            self._mask.seek(0, os.SEEK_END)
            self.mask_sum -= self.count - count  # only plain text (mask 1) is dropped
        self.count = count

    def _close(self) -> None:
        self._ids.close()
        if self._mask is not None:
            self._mask.close()

    def commit(self, meta: dict[str, Any], masked: bool) -> Path:
        self._close()
        if self._mask is not None and not masked:
            (self.tmp / MASK).unlink()
        meta = {**meta, "format": FORMAT, "dtype": self.dtype.name, "tokens": self.count,
                "masked": masked}
        (self.tmp / META).write_text(json.dumps(meta), encoding="utf-8")
        try:
            os.replace(self.tmp, self.final)
        except OSError:  # another process cached the same data meanwhile: use theirs
            shutil.rmtree(self.tmp, ignore_errors=True)
        prune()
        return self.final

    def discard(self) -> None:
        self._close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def open_cached(key: str) -> tuple[dict[str, Any], Path] | None:
    """(meta, folder) of a complete cached tokenisation, or None."""
    folder = cache_root() / key
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        size = (folder / IDS).stat().st_size
    except (OSError, ValueError):
        return None
    if meta.get("format") != FORMAT or size != meta["tokens"] * np.dtype(meta["dtype"]).itemsize:
        return None
    if meta.get("masked") and not (folder / MASK).is_file():
        return None
    with contextlib.suppress(OSError):
        os.utime(folder / META)  # recently used: kept by prune
    return meta, folder


def prune(keep: int = KEEP) -> None:
    """Keep the ``keep`` most recently used tokenisations (a run that has one open keeps
    reading it: its map outlives the unlink)."""
    root = cache_root()
    entries = []
    for folder in root.iterdir():
        if folder.name.startswith("."):
            if time.time() - folder.stat().st_mtime > 86400:  # a crashed writer's leftover
                shutil.rmtree(folder, ignore_errors=True)
            continue
        try:
            entries.append(((folder / META).stat().st_mtime, folder))
        except OSError:
            shutil.rmtree(folder, ignore_errors=True)
    for _, folder in sorted(entries, reverse=True)[keep:]:
        shutil.rmtree(folder, ignore_errors=True)


def memmap(path: Path, dtype: str | np.dtype[Any], count: int) -> np.ndarray[Any, Any]:
    if count == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(count,))


def chunked_block_sums(path: Path, block_size: int, n_blocks: int,
                       chunk_bytes: int = 16 << 20) -> np.ndarray[Any, Any]:
    """Per-block sums of a uint8 mask file, read in pieces (no map, bounded memory)."""
    per = max(1, chunk_bytes // block_size)
    out = np.empty(n_blocks, dtype=np.int64)
    with open(path, "rb") as fh:
        for start in range(0, n_blocks, per):
            k = min(per, n_blocks - start)
            raw = np.frombuffer(fh.read(k * block_size), dtype=np.uint8)
            out[start:start + k] = raw.reshape(k, block_size).sum(axis=1)
    return out


class Blocks(Sequence[list[int]]):
    """Fixed-size blocks of a token (or mask) array, picked by block number: ``b[i]`` is
    block ``rows[i]`` as a list, ``b[i:j]`` another view. Nothing is copied up front."""

    def __init__(self, data: np.ndarray[Any, Any], block_size: int,
                 index: np.ndarray[Any, Any] | Sequence[int]) -> None:
        self.data = data
        self.block_size = block_size
        self.rows = np.asarray(index, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, i: int) -> list[int]: ...
    @overload
    def __getitem__(self, i: slice) -> Blocks: ...

    def __getitem__(self, i: int | slice) -> list[int] | Blocks:
        if isinstance(i, slice):
            return Blocks(self.data, self.block_size, self.rows[i])
        start = int(self.rows[i]) * self.block_size
        return list(self.data[start:start + self.block_size].tolist())

    def __iter__(self) -> Iterator[list[int]]:
        for i in range(len(self)):
            yield self[i]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == list(b) for a, b in zip(self, other,
                                                                            strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __add__(self, other: Sequence[list[int]]) -> list[list[int]]:
        return [*self, *other]

    def __radd__(self, other: Sequence[list[int]]) -> list[list[int]]:
        return [*other, *self]

    def __repr__(self) -> str:
        return f"Blocks({len(self)} x {self.block_size})"
