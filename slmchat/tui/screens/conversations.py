"""Conversations on disk: where one is exported to (the chat screen opens, renames,
deletes and exports them)."""

from __future__ import annotations

import re
from pathlib import Path

from slmchat.engine.fsutil import write_private
from slmchat.engine.store.store import Store
from slmchat.engine.store.transcript import to_json, to_markdown


def _slug(title: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-").lower()
    return slug[:40] or "conversation"


def default_export_path(title: str, conv_id: int, fmt: str = "md") -> Path:
    return Path.cwd() / f"slmchat-{conv_id}-{_slug(title)}.{fmt}"


def export_conversation(store: Store, conv_id: int, path: Path) -> None:
    """Write the conversation to ``path``: JSON for a .json name, else Markdown (raises
    OSError)."""
    as_json = path.suffix.lower() == ".json"
    text = to_json(store, conv_id) if as_json else to_markdown(store, conv_id)
    write_private(path, text)
