"""The onnx runtime: ONNX Runtime GenAI on the CPU, over an int8 copy converted once.

``auto`` picks it on the CPU for an unquantized checkpoint of an architecture the ONNX
builder supports (the default model among them): a GPU, bitsandbytes or cpu-int8, an
explicit dtype or ``runner='hf'`` (the exact reference paths) and GGUF files go elsewhere.
A model the builder cannot convert, or a copy that stays broken after one rebuild, adds
one warning line and gives way to the next runtime. The copies themselves (build, cache,
check, load) are model/onnx.py; the token step is generation/backends/onnx.py. Nothing
here imports torch unless a GPU might be present and the device is "auto".
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from slmchat.engine.devices import BusyCores, onnx_thread_count
from slmchat.engine.generation.backends.onnx import OnnxBackend, OnnxState
from slmchat.engine.model import onnx
from slmchat.engine.model.files import (
    adapter_base,
    check_safetensors,
    fingerprint,
    loadable_base,
    resolve_source,
)
from slmchat.engine.model.spec import LoadedModel, ModelSpec, Progress
from slmchat.engine.runtimes.base import Source, reference_asked
from slmchat.errors import ModelLoadError

# A thread change reloads the ONNX session and re-feeds the conversation: at most this often.
RESIZE_EVERY_S = 20.0


def on_cpu(spec: Any) -> bool:
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


class OnnxRuntime:
    name = "onnx"
    tag = "onnx"
    # Two replies on onnx: a thread per side and interleaving take the same time, and
    # interleaved both columns grow at one pace (benchmarks/bench_compare.py).
    interleaves = True
    scores_sequences = False  # the copies return last-token logits only
    uses_torch = False
    shares_weights = True  # a generator per state

    def speculates(self, lm: LoadedModel) -> bool:
        """A copy with a logits window whose rows this machine computes the same in every
        forward of two or more positions: the decode loop then never runs a one-position
        forward, so a verified draft is exactly the plain reply (backends/onnx.py)."""
        return OnnxState(lm.model).min_rows > 1

    def unavailable(self) -> str | None:
        try:
            import onnxruntime_genai  # noqa: F401
        except Exception as exc:
            return f"onnxruntime-genai is not usable here ({type(exc).__name__}: {str(exc)[:120]})"
        return None

    def blocker(self, spec: ModelSpec, source: Source) -> str | None:
        if source.kind == "onnx":
            if spec.adapter:
                return "adapters cannot be applied to an ONNX copy (merge before converting)"
            return None if on_cpu(spec) else "the onnx runtime runs on the CPU only"
        if spec.quant != "none":
            return f"--quant {spec.quant} runs on transformers"
        if source.kind == "gguf":
            return "it converts checkpoint folders, not GGUF files"
        if not on_cpu(spec):
            return "it runs on the CPU; this model is placed on a GPU"
        return None

    def auto_blocker(self, spec: ModelSpec, source: Source) -> str | None:
        return None if source.kind == "onnx" else reference_asked(spec)

    def skip_note(self, spec: ModelSpec, source: Source) -> str | None:
        return None

    def load(self, spec: ModelSpec, source: Source, name: str, progress: Progress | None,
             warnings: list[str], lite: bool) -> LoadedModel | None:
        if source.kind == "onnx":
            return _load_standalone(source.path, spec, name)
        explicit = spec.runtime == self.name
        base_kind, base, adapter = source_and_adapter(source.kind, source.path, spec)
        if base_kind == "gguf":
            if explicit:
                raise ModelLoadError("the onnx runtime converts checkpoint folders, not GGUF files")
            return None
        if adapter is not None and not (adapter / "adapter_config.json").is_file():
            return None  # the transformers loader gives the clear message
        reason = onnx.unsupported_reason(base)
        if reason:
            if explicit:
                raise ModelLoadError(f"the onnx runtime cannot run this model: {reason}")
            warnings.append(f"{reason}; running on the transformers runtime")
            return None
        weights = sorted(base.glob("*.safetensors"))
        check_safetensors(weights + (sorted(adapter.glob("*.safetensors")) if adapter else []))
        source_fp = fingerprint(weights)
        threads = onnx_thread_count(BusyCores())
        try:
            folder = onnx.ensure_copy(name, base, adapter, progress)
            try:
                return onnx.load_copy(folder, spec, name, source.kind, base, source_fp, threads)
            except onnx.OnnxUnavailable:
                # Whole by its marker yet unloadable (bytes flipped inside a file): rebuild once.
                onnx.discard_copy(folder)
                folder = onnx.ensure_copy(name, base, adapter, progress)
                return onnx.load_copy(folder, spec, name, source.kind, base, source_fp, threads)
        except onnx.OnnxUnavailable as exc:
            if explicit:
                raise
            warnings.append(f"{exc}; running on the transformers runtime")
            return None

    def backend(self, lm: LoadedModel) -> OnnxBackend:
        return OnnxBackend(lm.model)

    def fit_threads(self, lm: LoadedModel, busy: BusyCores, training: bool) -> None:
        """The free cores, at most every RESIZE_EVERY_S (a resize reloads the session)."""
        model = lm.model
        want = onnx_thread_count(busy, training=training, current=model.threads)
        now = time.monotonic()
        if want != model.threads and now - getattr(model, "resized_at", 0.0) >= RESIZE_EVERY_S:
            model.set_threads(want)
            model.resized_at = now

    def after_empty_reply(self, lm: LoadedModel) -> str | None:
        """Hash the copy's files once per load (an empty or failed reply is what flipped
        bytes inside model.onnx.data look like); a damaged copy is marked for a rebuild."""
        folder = lm.extra.get("onnx_dir")
        model = lm.model
        if not folder or getattr(model, "deep_checked", False):
            return None
        model.deep_checked = True
        path = Path(folder)
        problem = onnx.check_copy(path, deep=True)
        if problem is None:
            return None
        onnx.mark_damaged(path)
        then = ("write it again" if lm.info.kind == "onnx"  # a standalone copy: the user's
                else "it is rebuilt on the next load")
        return f"the ONNX copy {path.name} is damaged ({problem}): {then}"


def _load_standalone(path: Path, spec: Any, name: str) -> LoadedModel:
    """A folder written by `slmchat quantize --method onnx-int8`: onnx only."""
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


def pending_copy(spec: ModelSpec) -> tuple[str, Path, Path | None] | None:
    """(name, source, adapter) of the ONNX copy a chat engine would build for ``spec``
    on its next load, or None (another runtime, unsupported model, copy cached).

    Lets a command build it up front with a progress bar (the app would otherwise sit on
    "loading" while it converts)."""
    from slmchat.engine import runtimes

    kind, path = resolve_source(spec)
    chosen = runtimes.candidates(spec, Source(kind, path))
    if not chosen or chosen[0].name != OnnxRuntime.name or kind == "onnx":
        return None
    base_kind, base, adapter = source_and_adapter(kind, path, spec)
    if base_kind == "gguf" or onnx.unsupported_reason(base):
        return None
    if adapter is not None and not (adapter / "adapter_config.json").is_file():
        return None
    name = _name(kind, path, spec)
    target = onnx.copy_path(name, base, adapter)
    if onnx.check_copy(target) is None or any(
            onnx.check_copy(p) is None for p in target.parent.glob(f"*-{target.name.rsplit('-', 1)[-1]}")):
        return None
    return name, base, adapter


def _name(kind: str, path: Path, spec: Any) -> str:
    if kind == "default":
        from slmchat.engine.model.default import MODEL_NAME

        return MODEL_NAME
    name = path.stem if kind == "gguf" else path.name
    return f"{name}+{Path(spec.adapter).name}" if spec.adapter else name


RUNTIME = OnnxRuntime()
