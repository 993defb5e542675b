"""Names for fine-tune outputs: after their run and their base, not the folder ("model").

A fine-tune writes ``slmchat-train.json`` into its output folder (engine/finetune/result.py);
by default that folder is ``RUN_DIR/model``, which is why a plain folder name would
call every fine-tuned model "model".
"""

from __future__ import annotations

import json
from pathlib import Path

TRAIN_RECORD = "slmchat-train.json"
GENERIC_NAMES = ("model", "out", "output", "adapter")


def finetuned_name(folder: Path) -> str | None:
    """``RUN [METHOD on BASE]`` for a fine-tune output folder, or None for anything else."""
    try:
        record = json.loads((folder / TRAIN_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    folder = folder.expanduser().resolve()
    run = folder.parent.name if folder.name in GENERIC_NAMES else folder.name
    base = str(record.get("base_model") or "?")
    base_name = Path(base).name or base
    method = str(record.get("method") or "fine-tune")
    return f"{run} [{method} on {base_name}]"
