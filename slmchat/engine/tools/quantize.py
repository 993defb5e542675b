"""Quantize and save: bitsandbytes 8/4-bit copies and cpu-int8 copies (codec in model/int8.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmchat.engine.fsutil import atomic_dir, dir_size
from slmchat.engine.model import int8
from slmchat.errors import InvalidParameterError

Progress = Callable[[str, float], None]


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
    if method not in ("bnb", "cpu-int8"):
        raise InvalidParameterError(f"unknown method {method!r} (choose bnb or cpu-int8)")
    if method == "cpu-int8" and bits != 8:
        raise InvalidParameterError("cpu-int8 is 8-bit only (use --bits 8 or --method bnb)")
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
