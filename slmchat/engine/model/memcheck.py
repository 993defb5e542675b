"""Will a second model fit beside the one loaded? (the side-by-side view)

The loaded model already sits in the free memory figure the estimate compares with, so
the check is: what the new model needs (weights + full-context KV cache + overhead,
discovery.estimate_memory) against what the system has free now, with a margin so the
machine is not pushed into swap.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from slmchat.engine.model.discovery import (
    MemoryEstimate,
    ModelEntry,
    default_entry,
    estimate_memory,
    inspect_folder,
    inspect_gguf,
)
from slmchat.engine.model.files import is_gguf_file
from slmchat.engine.model.spec import ModelSpec
from slmchat.fmt import human_bytes

HEADROOM = 0.85  # use at most this share of the free memory


def entry_for(spec: ModelSpec) -> ModelEntry | None:
    """The discovery facts for ``spec.path`` (None when it cannot be read)."""
    if spec.path in ("", "default"):
        return default_entry()
    path = Path(spec.path).expanduser()
    if path.is_file() and (path.suffix.lower() == ".gguf" or is_gguf_file(path)):
        return inspect_gguf(path, "compare")
    return inspect_folder(path, "compare") if path.is_dir() else None


def estimate_for(spec: ModelSpec) -> MemoryEstimate | None:
    """Memory ``spec`` would take once loaded (adapters: with their base)."""
    entry = entry_for(spec)
    if entry is None:
        return None
    base = None
    if entry.format == "lora" and entry.base:
        # Adapters trained on the embedded model record its Hub name, not a path.
        known = Path(entry.base).expanduser().exists()
        path = entry.base if known else "default" if "smollm2-135m" in entry.base.lower() else ""
        base = entry_for(replace(spec, path=path, adapter=None)) if path else None
    elif spec.adapter:
        base, entry = entry, entry_for(replace(spec, path=spec.adapter, adapter=None)) or entry
    return estimate_memory(spec, entry, base)


def room_for(spec: ModelSpec, beside: str = "the model already loaded") -> str | None:
    """None when ``spec`` fits in free memory now, else a one-line reason to refuse."""
    estimate = estimate_for(spec)
    if estimate is None or estimate.available_bytes is None:
        return None  # unknown (GPU, unreadable folder): the load itself will say
    limit = int(estimate.available_bytes * HEADROOM)
    if estimate.total_bytes <= limit:
        return None
    return (f"a second model would need about {human_bytes(estimate.total_bytes)} and only "
            f"{human_bytes(estimate.available_bytes)} is free beside {beside}: "
            "compare with a quantized copy (cpu-int8) or the same model with other settings")
