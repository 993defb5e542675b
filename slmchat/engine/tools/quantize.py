"""Quantize and save: bitsandbytes 8/4-bit copies, cpu-int8 copies (codec in model/int8.py)
and onnx-int8 copies (ONNX Runtime GenAI, model/onnx.py: the fast CPU chat runtime)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmchat.engine.fsutil import atomic_dir, dir_size
from slmchat.engine.model import int8
from slmchat.errors import InvalidParameterError

Progress = Callable[[str, float], None]
METHODS = ("bnb", "cpu-int8", "onnx-int8")


def _noop(_msg: str, _frac: float) -> None:
    return None


@dataclass(frozen=True)
class QuantizeResult:
    out: Path
    method: str
    bits: int
    size_before: int
    size_after: int
    seconds: float


def source_size(path: str) -> int:
    """Bytes on disk of the weights a spec's path points to."""
    if path in ("default", ""):
        from slmchat.engine.model.default import ensure_default_model

        return dir_size(ensure_default_model())
    return dir_size(Path(path).expanduser())


def quantize_and_save(
    spec: Any, out: Path, *, method: str = "bnb", bits: int = 8,
    overwrite: bool = False, progress: Progress = _noop,
) -> QuantizeResult:
    """Load ``spec`` quantized and save the copy at ``out`` (atomically)."""
    from slmchat.engine.model.loader import load

    if bits not in (4, 8):
        raise InvalidParameterError(f"--bits must be 8 or 4, not {bits}")
    if method not in METHODS:
        raise InvalidParameterError(f"unknown method {method!r} (choose {', '.join(METHODS)})")
    if method in ("cpu-int8", "onnx-int8") and bits != 8:
        raise InvalidParameterError(f"{method} is 8-bit only (use --bits 8 or --method bnb)")
    if method == "onnx-int8":
        return _onnx_int8(spec, out, overwrite, progress)
    if spec.adapter:
        raise InvalidParameterError("merge the adapter first (slmchat export --merge-adapter), "
                                    "then quantize the merged model")
    start = time.perf_counter()
    from slmchat.engine.fsutil import check_target

    check_target(out.expanduser().resolve(), overwrite)
    progress("loading", 0.1)
    if method == "cpu-int8":
        spec = spec.with_(quant="cpu-int8", device="cpu", dtype="fp32")
    else:
        spec = spec.with_(quant="8bit" if bits == 8 else "4bit")
    lm = load(spec)
    if lm.info.kind == "adapter" or lm.info.adapter:
        raise InvalidParameterError("merge the adapter first (slmchat export --merge-adapter), "
                                    "then quantize the merged model")
    progress("saving", 0.7)
    with atomic_dir(out, overwrite) as tmp:
        if method == "cpu-int8":
            int8.save_cpu_int8(lm.model, tmp)
        else:
            lm.model.save_pretrained(str(tmp))
        lm.tokenizer.save_pretrained(str(tmp))
        _write_card(tmp, lm.info, method, bits)
    progress("done", 1.0)
    final = out.expanduser().resolve()
    return QuantizeResult(final, method, bits, source_size(spec.path), dir_size(final),
                          time.perf_counter() - start)


def onnx_source(spec: Any) -> tuple[Path, Path | None]:
    """(checkpoint folder, adapter or None) that `--method onnx-int8` converts; a one-line
    InvalidParameterError when it cannot (checked before any slow work)."""
    from slmchat.engine.model import onnx
    from slmchat.engine.model.files import resolve_source
    from slmchat.engine.runtimes.onnx import source_and_adapter

    kind, path = resolve_source(spec)
    if onnx.is_onnx_folder(path):
        raise InvalidParameterError(f"{path} is already an ONNX copy")
    if kind == "gguf":
        raise InvalidParameterError("onnx-int8 converts checkpoint folders; export the GGUF file "
                                    "to a folder first (slmchat export)")
    _, source, adapter = source_and_adapter(kind, path, spec)
    reason = onnx.unsupported_reason(source)
    if reason:
        raise InvalidParameterError(f"cannot convert {source} to ONNX: {reason}")
    return source, adapter


def _onnx_int8(spec: Any, out: Path, overwrite: bool, progress: Progress) -> QuantizeResult:
    """A standalone ONNX Runtime GenAI int8 copy that loads with ``--model OUT``."""
    from slmchat.engine.fsutil import check_target
    from slmchat.engine.model import onnx
    from slmchat.errors import ModelLoadError

    start = time.perf_counter()
    check_target(out.expanduser().resolve(), overwrite)
    source, adapter = onnx_source(spec)
    progress("converting with the ONNX Runtime GenAI model builder", 0.05)
    try:
        onnx.build_copy(source, out.expanduser().resolve(), adapter, progress, overwrite=overwrite)
    except ModelLoadError as exc:
        raise InvalidParameterError(str(exc)) from exc
    final = out.expanduser().resolve()
    arch = onnx.architecture(source) or "?"
    (final / "README.md").write_text(
        f"# {final.name} (ONNX Runtime GenAI int8)\n\nConverted by slmchat from `{source}`"
        f"{f' with the adapter `{adapter}` merged' if adapter else ''} ({arch}): int8 weights, "
        "last-token logits, for the CPU.\n\nChat with `slmchat chat --model THIS_FOLDER` "
        "(or `slmchat generate --model THIS_FOLDER ...`); it also loads with "
        "`onnxruntime_genai.Model(THIS_FOLDER)`.\n")
    onnx.write_marker(final, json.loads((final / onnx.MARKER).read_text()))  # README counted
    progress("done", 1.0)
    return QuantizeResult(final, "onnx-int8", 8, dir_size(source), dir_size(final),
                          time.perf_counter() - start)


def _write_card(folder: Path, info: Any, method: str, bits: int) -> None:
    how = (
        "Reload with `slmchat chat --model THIS_FOLDER` or `slmchat.engine.model.loader.load`. "
        "Plain transformers cannot read this format; each Linear's float weight is "
        "`qweight.float() * qscale[:, None]` in model.cpu-int8.safetensors."
        if method == "cpu-int8" else
        "Reload with `AutoModelForCausalLM.from_pretrained(THIS_FOLDER, device_map='cpu')` "
        "(needs bitsandbytes) or `slmchat chat --model THIS_FOLDER`."
    )
    kind = "cpu-int8 (torch dynamic int8)" if method == "cpu-int8" else f"bitsandbytes {bits}-bit"
    (folder / "README.md").write_text(
        f"# {info.name} ({kind})\n\nQuantized by slmchat from `{info.path}` "
        f"({info.architecture}, {info.n_params:,} parameters).\n\n{how}\n"
    )
