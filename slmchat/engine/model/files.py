"""Checkpoint files on disk: which weights a folder holds, and whether they are whole.

Checked before transformers sees a folder, so a truncated copy or a pickle file gets a
clear message instead of a stack trace deep inside a loader.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import struct
from json import loads as _loads
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmchat.errors import ModelLoadError, first_line

CPU_INT8_METHOD = "slmchat-cpu-int8"  # config.json quant_method of model/int8.py copies

if TYPE_CHECKING:
    from slmchat.engine.model.spec import ModelSpec

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


def is_gguf_file(path: Path) -> bool:
    """Whether ``path`` starts with the GGUF magic (Ollama's blobs have no suffix)."""
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"GGUF"
    except OSError:
        return False




def gguf_extent(path: Path) -> int | None:
    """The bytes a GGUF file must hold (header, metadata, tensor table and the furthest
    tensor's data), from its header alone (model/gguf_header: milliseconds, where parsing
    every field with GGUFReader takes seconds). Raises ValueError when the header itself
    is cut short or damaged."""
    from slmchat.engine.model.gguf_header import read_header

    return read_header(path).data_end


def gguf_damage(path: Path) -> str | None:
    """Why a GGUF file is not whole ("truncated GGUF file: 662 of 672 bytes", "damaged
    GGUF file: ..."), or None: a copy or download that stopped early gets a reason
    instead of numpy's "cannot reshape array" from deep inside a reader."""
    try:
        need = gguf_extent(path)
    except (ValueError, OverflowError, struct.error, RecursionError) as exc:
        reason = ("the file ends inside its header" if isinstance(exc, struct.error) else
                  "arrays nested too deeply" if isinstance(exc, RecursionError) else exc)
        return f"damaged GGUF file: {reason}"
    except (OSError, ImportError):
        return None  # unreadable here: the reader says why
    have = path.stat().st_size
    if need is not None and have < need:
        return f"truncated GGUF file: {have} of {need} bytes"
    return None


def check_gguf(path: Path) -> None:
    """Raise ModelLoadError when a GGUF file is shorter than its header says or its
    header is damaged."""
    if (why := gguf_damage(path)) is not None:
        raise ModelLoadError(f"{why} ({path}); copy or download it again")


def has_python_files(folder: Path) -> bool:
    return any(folder.glob("*.py"))


def shown_path(path: str | Path, limit: int = 160) -> str:
    """A path for a one-line message: a 10 MB one is cut, with its length said."""
    text = str(path)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def resolve_source(spec: ModelSpec) -> tuple[str, Path]:
    """Return (kind, path) for the spec, raising a clear error for bad paths."""
    if spec.path in ("default", ""):
        from slmchat.engine.model.default import ensure_default_model

        return "default", ensure_default_model()
    try:
        path = Path(spec.path).expanduser()
        path.stat()
    except FileNotFoundError:
        raise ModelLoadError(f"model path does not exist: {shown_path(spec.path)}") from None
    except (OSError, ValueError, RuntimeError) as exc:  # too long, NUL byte, ~nobody
        why = getattr(exc, "strerror", None) or first_line(exc)
        raise ModelLoadError(f"cannot use model path {shown_path(spec.path)}: {why}") from None
    if path.is_file():
        if path.suffix.lower() == ".gguf" or is_gguf_file(path):
            check_gguf(path)
            return "gguf", path  # by content too: Ollama's blobs are GGUF without a suffix
        raise ModelLoadError(
            f"not a model: {path} (expected a checkpoint folder or a GGUF file)"
        )
    if (path / "adapter_config.json").is_file():
        return "adapter", path
    if (path / "genai_config.json").is_file():  # an ONNX Runtime GenAI copy
        return "onnx", path
    if not (path / "config.json").is_file():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return "gguf", ggufs[0]
        raise ModelLoadError(f"not a model folder (no config.json): {path}")
    return "hf", path


@functools.lru_cache(maxsize=256)
def _parse_json(path: str, mtime_ns: int, size: int) -> Any:
    with open(path, encoding="utf-8") as fh:
        return _loads(fh.read())


def read_json(path: Path, strict: bool = False) -> dict[str, Any]:
    """A JSON object file (config.json, adapter_config.json, ...), parsed once per
    version of the file: discovery, format detection and the loaders all read it
    through here. Missing or unreadable: {} (``strict``: a one-line ModelLoadError)."""
    try:
        st = path.stat()
        data = _parse_json(str(path), st.st_mtime_ns, st.st_size)
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError too
        if strict:
            raise ModelLoadError(f"unreadable {path.name} in {path.parent}: {exc}") from exc
        return {}
    return copy.deepcopy(data) if isinstance(data, dict) else {}


def checkpoint_quant(folder: Path) -> str:
    """How a checkpoint folder's weights are stored: none | cpu-int8 | 8bit | 4bit."""
    qc = read_json(folder / "config.json").get("quantization_config") or {}
    method = str(qc.get("quant_method", ""))
    if method == CPU_INT8_METHOD:
        return "cpu-int8"
    if method == "bitsandbytes":
        return "8bit" if qc.get("load_in_8bit") else "4bit"
    return "none"


def adapter_base(adapter_dir: Path) -> str:
    """The base model named by a PEFT adapter's config."""
    cfg = read_json(adapter_dir / "adapter_config.json", strict=True)
    base = cfg.get("base_model_name_or_path")
    if not base:
        raise ModelLoadError(f"adapter {adapter_dir} does not name its base model")
    return str(base)


def loadable_base(base: str) -> str:
    """Map an adapter's recorded base to something loadable offline."""
    if base == "default" or Path(base).expanduser().exists():
        return base
    if "smollm2-135m" in base.lower():  # adapters trained on the embedded model
        return "default"
    return base


def is_bnb_checkpoint(folder: Path) -> bool:
    return checkpoint_quant(folder) in ("8bit", "4bit")


def is_cpu_int8_checkpoint(folder: Path) -> bool:
    return checkpoint_quant(folder) == "cpu-int8"


