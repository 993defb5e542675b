"""Quantize and export jobs of the model panel, run in its thread workers.

Each job reports through ``post`` (the screen's ``post_message``) with ``TaskProgress``
and one final ``TaskDone``; nothing here touches widgets.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.message import Message

from slmchat.engine.model.discovery import ModelEntry
from slmchat.engine.model.spec import ModelSpec
from slmchat.errors import first_line
from slmchat.fmt import human_bytes
from slmchat.i18n import t
from slmchat.tui.messages import TaskDone, TaskProgress

Post = Callable[[Message], Any]


def free_path(path: Path) -> Path:
    """``path`` or ``path-2``, ``path-3``… so an action never overwrites a model."""
    if not path.exists():
        return path
    for i in range(2, 1000):
        candidate = path.with_name(f"{path.stem}-{i}{path.suffix}")
        if not candidate.exists():
            return candidate
    return path


def run_quantize(spec: ModelSpec, out: Path, method: str, bits: int, post: Post) -> None:
    from slmchat.engine.tools.quantize import quantize_and_save

    def progress(text: str, frac: float) -> None:
        post(TaskProgress("quantize", text, frac))

    try:
        r = quantize_and_save(spec, out, method=method, bits=bits, progress=progress)
    except Exception as exc:
        post(TaskDone("quantize", t("task.quantize_failed", error=first_line(exc)), False))
        return
    post(TaskDone(
        "quantize", t("task.quantized", path=r.out, before=human_bytes(r.size_before),
                      after=human_bytes(r.size_after), s=r.seconds), True, str(r.out)))


def run_export(spec: ModelSpec, entry: ModelEntry | None, root: Path, stem: str,
               post: Post) -> None:
    from slmchat.engine.tools.export import export_model

    def progress(text: str, frac: float) -> None:
        post(TaskProgress("export", text, frac))

    llama = entry is not None and (entry.plain_llama or entry.format == "lora")
    merged = bool(spec.adapter) or (entry is not None and entry.format == "lora")
    out = free_path(root / f"{stem}-{'merged' if merged else 'export'}")
    gguf = free_path(root / f"{stem}-f16.gguf") if llama else None
    try:
        r = export_model(spec, out=out, merge_adapter=True, gguf=gguf, progress=progress)
    except Exception as exc:
        if gguf is None or "GGUF" not in str(exc):
            post(TaskDone("export", t("task.export_failed", error=first_line(exc)), False))
            return
        try:  # a non-Llama adapter base: the safetensors export still works
            r = export_model(spec, out=out, merge_adapter=True, progress=progress)
        except Exception as exc2:
            post(TaskDone("export", t("task.export_failed", error=first_line(exc2)), False))
            return
    text = t("task.exported", path=r.out or "")
    if r.gguf:
        text += t("task.exported_gguf", gguf=r.gguf,
                  check=r.check.line if r.check else t("task.unverified"))
    post(TaskDone("export", text, True, str(r.out) if r.out else None))
