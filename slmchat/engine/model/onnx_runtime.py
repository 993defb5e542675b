"""Which runtime a chat model gets, and loading it on the onnx runtime when it can.

``auto`` picks onnx on the CPU for an unquantized checkpoint of an architecture the
ONNX builder supports (the default model among them), and transformers for everything
else: a GPU, bitsandbytes or cpu-int8, an explicit dtype or ``runner='hf'`` (the exact
reference paths), GGUF files, unsupported architectures. A model the builder cannot
convert, or a copy that stays broken after one rebuild, adds one warning line and
returns None: the loader then goes on with transformers. Nothing here imports torch
unless a GPU might be present and the device is "auto".
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from slmchat.engine.model import onnx
from slmchat.engine.model.files import (
    adapter_base,
    check_safetensors,
    fingerprint,
    loadable_base,
    resolve_source,
)
from slmchat.errors import ModelLoadError


def _on_cpu(spec: Any) -> bool:
    device = (spec.device or "auto").lower()
    if device == "cpu":
        return True
    if device != "auto":
        return False
    from slmchat.engine.devices import gpu_possible

    if not gpu_possible():
        return True
    from slmchat.engine.devices import resolve_device

    return resolve_device("auto") == "cpu"


def blocker(spec: Any, kind: str) -> str | None:
    """Why ``spec`` needs the transformers runtime (None when onnx can run it)."""
    if spec.quant != "none":
        return f"--quant {spec.quant} runs on transformers"
    if kind == "gguf":
        return "GGUF files run on transformers (export a checkpoint folder first)"
    if not _on_cpu(spec):
        return "the onnx runtime runs on the CPU; this model is placed on a GPU"
    return None


def _auto_blocker(spec: Any) -> str | None:
    """Choices that mean "the transformers path, exactly" when the runtime is auto."""
    if spec.runner == "hf":
        return "runner hf"
    if spec.dtype != "auto":
        return f"dtype {spec.dtype}"
    return None


def source_and_adapter(kind: str, path: Path, spec: Any) -> tuple[str, Path, Path | None]:
    """(kind of the base, base checkpoint folder, adapter folder or None)."""
    adapter = Path(spec.adapter).expanduser() if spec.adapter else None
    if kind == "adapter":
        adapter = path
        base_kind, base = resolve_source(replace(spec, path=loadable_base(adapter_base(path)),
                                                 adapter=None))
        if base_kind == "adapter":
            raise ModelLoadError(f"adapter base {base} is itself an adapter")
        return base_kind, base, adapter
    return kind, path, adapter


def try_load(kind: str, path: Path, spec: Any, name: str, progress: onnx.Progress | None,
             warnings: list[str]) -> Any:
    """A LoadedModel on the onnx runtime, or None to go on with transformers."""
    from slmchat.engine.devices import BusyCores, onnx_thread_count

    if kind == "onnx":
        return _load_standalone(path, spec, name)
    explicit = spec.runtime == "onnx"
    reason = blocker(spec, kind) or (None if explicit else _auto_blocker(spec))
    if reason:
        if explicit:
            raise ModelLoadError(f"the onnx runtime cannot run this model: {reason} "
                                 "(use --runtime transformers)")
        return None
    base_kind, source, adapter = source_and_adapter(kind, path, spec)
    if base_kind == "gguf":
        if explicit:
            raise ModelLoadError("the onnx runtime converts checkpoint folders, not GGUF files")
        return None
    if adapter is not None and not (adapter / "adapter_config.json").is_file():
        return None  # the transformers loader gives the clear message
    reason = onnx.unsupported_reason(source)
    if reason:
        warnings.append(f"{reason}; running on the transformers runtime")
        return None
    weights = sorted(source.glob("*.safetensors"))
    check_safetensors(weights + (sorted(adapter.glob("*.safetensors")) if adapter else []))
    source_fp = fingerprint(weights)
    threads = onnx_thread_count(BusyCores())
    try:
        folder = onnx.ensure_copy(name, source, adapter, progress)
        try:
            return onnx.load_copy(folder, spec, name, kind, source, source_fp, threads)
        except onnx.OnnxUnavailable:
            # Whole by its marker yet unloadable (bytes flipped inside a file): rebuild once.
            onnx.discard_copy(folder)
            folder = onnx.ensure_copy(name, source, adapter, progress)
            return onnx.load_copy(folder, spec, name, kind, source, source_fp, threads)
    except onnx.OnnxUnavailable as exc:
        warnings.append(f"{exc}; running on the transformers runtime")
        return None


def _load_standalone(path: Path, spec: Any, name: str) -> Any:
    """A folder written by `slmchat quantize --method onnx-int8`: onnx only."""
    from slmchat.engine.devices import BusyCores, onnx_thread_count

    if spec.runtime == "transformers":
        raise ModelLoadError(f"{path} is an ONNX copy; it runs on the onnx runtime only "
                             "(drop --runtime transformers)")
    reason = blocker(spec, "onnx")
    if reason:
        raise ModelLoadError(f"{path} is an ONNX copy: {reason}")
    if spec.adapter:
        raise ModelLoadError(f"{path} is an ONNX copy: adapters cannot be applied to it "
                             "(merge before converting)")
    problem = onnx.check_copy(path)
    if problem:
        raise ModelLoadError(f"{path} is a broken ONNX copy ({problem}); write it again")
    try:
        meta = json.loads((path / onnx.MARKER).read_text())
    except (OSError, json.JSONDecodeError):
        meta = {}
    try:
        return onnx.load_copy(path, spec, name, "onnx", path, str(meta.get("source_fingerprint", "")),
                              onnx_thread_count(BusyCores()))
    except onnx.OnnxUnavailable as exc:
        raise ModelLoadError(str(exc)) from exc


def pending_copy(spec: Any) -> tuple[str, Path, Path | None] | None:
    """(name, source, adapter) of the ONNX copy a chat engine would build for ``spec``
    on its next load, or None (transformers runtime, unsupported model, copy cached).

    Lets a command build it up front with a progress bar (the app would otherwise sit on
    "loading" while it converts)."""
    if spec.runtime == "transformers":
        return None
    kind, path = resolve_source(spec)
    if kind in ("onnx", "gguf") or blocker(spec, kind):
        return None
    if spec.runtime != "onnx" and _auto_blocker(spec):
        return None
    base_kind, source, adapter = source_and_adapter(kind, path, spec)
    if base_kind == "gguf" or onnx.unsupported_reason(source):
        return None
    if adapter is not None and not (adapter / "adapter_config.json").is_file():
        return None
    name = _name(kind, path, spec)
    target = onnx.copy_path(name, source, adapter)
    if onnx.check_copy(target) is None or any(
            onnx.check_copy(p) is None for p in target.parent.glob(f"*-{target.name.rsplit('-', 1)[-1]}")):
        return None
    return name, source, adapter


def _name(kind: str, path: Path, spec: Any) -> str:
    if kind == "default":
        from slmchat.engine.model.default import MODEL_NAME

        return MODEL_NAME
    name = path.stem if kind == "gguf" else path.name
    return f"{name}+{Path(spec.adapter).name}" if spec.adapter else name
