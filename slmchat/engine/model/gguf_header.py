"""Read a GGUF file's header fast: scalar metadata, parameter count, and whether the file
holds all of its tensors.

gguf-py's GGUFReader builds a numpy view per array element (every token and merge of the
vocabulary), which took 1.5-3 s per file on a 49k-token vocabulary: twice per
`slmchat generate --model NAME` (the store scan, then the load). This reads the same
header with struct over a memory map, skipping arrays by their lengths, in tens of
milliseconds; nothing past the header is read.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
            12: "d"}
_STRING, _ARRAY = 8, 9
MAX_KV = 1 << 20  # a header claiming more entries than this is garbage, not a model


@dataclass(frozen=True)
class GGUFHeader:
    meta: dict[str, Any]  # scalar values; arrays as their length under "KEY#len"
    n_params: int
    data_end: int  # where the last tensor ends
    size: int  # the file's size

    @property
    def truncated(self) -> bool:
        return self.data_end > self.size


class _Cursor:
    def __init__(self, buf: Any) -> None:
        self.buf, self.pos = buf, 0

    def take(self, fmt: str) -> Any:
        value = struct.unpack_from("<" + fmt, self.buf, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.take("Q")
        if n > len(self.buf) - self.pos:
            raise ValueError("a string runs past the end of the file")
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return raw.decode("utf-8", "replace")

    def skip_array(self, kind: int, count: int) -> None:
        if kind == _STRING:
            for _ in range(count):
                self.pos += 8 + struct.unpack_from("<Q", self.buf, self.pos)[0]
        elif kind in _SCALARS:
            self.pos += struct.calcsize(_SCALARS[kind]) * count
        else:
            raise ValueError(f"unsupported array element type {kind}")
        if self.pos > len(self.buf):
            raise ValueError("an array runs past the end of the file")


def read_header(path: Path) -> GGUFHeader:
    """The header of ``path``; ValueError when it is not a readable GGUF header."""
    import gguf

    with path.open("rb") as fh:
        size = path.stat().st_size
        if size < 24:
            raise ValueError("shorter than a GGUF header")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            try:
                return _parse(mm, size, gguf.GGML_QUANT_SIZES)
            except struct.error as exc:
                raise ValueError("the header runs past the end of the file") from exc


def _parse(buf: Any, size: int, quant_sizes: Any) -> GGUFHeader:
    cur = _Cursor(buf)
    if bytes(buf[:4]) != b"GGUF":
        raise ValueError("no GGUF magic")
    cur.pos = 4
    version = cur.take("I")
    if version < 2:
        raise ValueError(f"GGUF version {version} is too old")
    n_tensors, n_kv = cur.take("Q"), cur.take("Q")
    if n_kv > MAX_KV or n_tensors > MAX_KV:
        raise ValueError("implausible header counts")
    meta: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string()
        kind = cur.take("I")
        if kind == _STRING:
            meta[key] = cur.string()
        elif kind == _ARRAY:
            elem, count = cur.take("I"), cur.take("Q")
            meta[f"{key}#len"] = count
            cur.skip_array(elem, count)
        elif kind in _SCALARS:
            meta[key] = cur.take(_SCALARS[kind])
        else:
            raise ValueError(f"unknown metadata type {kind} for {key}")
    n_params = 0
    infos = []
    for _ in range(n_tensors):
        cur.string()
        dims = [cur.take("Q") for _ in range(cur.take("I"))]
        kind, offset = cur.take("I"), cur.take("Q")
        elements = 1
        for d in dims:
            elements *= d
        n_params += elements
        block, type_size = _sizes(quant_sizes, kind)
        infos.append(offset + elements // block * type_size)
    align = int(meta.get("general.alignment") or 32)
    start = (cur.pos + align - 1) // align * align
    data_end = start + max(infos, default=0)
    return GGUFHeader(meta, n_params, data_end, size)


def _sizes(quant_sizes: Any, kind: int) -> tuple[int, int]:
    import gguf

    try:
        return tuple(quant_sizes[gguf.GGMLQuantizationType(kind)])  # type: ignore[return-value]
    except (ValueError, KeyError) as exc:
        raise ValueError(f"unknown tensor type {kind}") from exc
