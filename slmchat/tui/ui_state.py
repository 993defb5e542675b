"""What the app remembers about its own screen between runs: the docked panel's width,
the models used most recently (the quick switcher lists them first) and thinking on/off
for each thinking model (by model path).

Kept in ``DATA_DIR/ui-state.json``, beside ``app-state.json`` (last_model.py), in its
own file: that one is deleted whenever the model is back to ``[model]``. A missing or
broken file means the defaults; nothing here is worth an error.
"""

from __future__ import annotations

import json
from typing import Any

from slmchat.engine.model.spec import ModelSpec

STATE_FILE = "ui-state.json"
RECENT_MAX = 10


def _path() -> Any:
    from slmchat.paths import data_dir

    return data_dir() / STATE_FILE


def load_state() -> dict[str, Any]:
    try:
        state = json.loads(_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def save_state(state: dict[str, Any]) -> None:
    from slmchat.engine.fsutil import write_json_atomic

    write_json_atomic(_path(), state)


def spec_dict(spec: ModelSpec) -> dict[str, Any]:
    """The fields that say which model runs how (what a conversation remembers)."""
    return spec.identity()


def spec_from(values: dict[str, Any]) -> ModelSpec | None:
    """A ModelSpec from a stored dict; None when it is not one."""
    try:
        return ModelSpec().with_identity(values)
    except (TypeError, KeyError):
        return None


def with_recent(recent: list[dict[str, Any]], spec: ModelSpec) -> list[dict[str, Any]]:
    """``recent`` with ``spec`` moved to the front (one entry per model path)."""
    entry = spec_dict(spec)
    rest = [r for r in recent if isinstance(r, dict) and r.get("path") != spec.path]
    return [entry, *rest][:RECENT_MAX]


def thinking_of(state: dict[str, Any], path: str) -> bool | None:
    """The thinking switch last chosen for the model at ``path``; None when never set."""
    table = state.get("thinking")
    value = table.get(path) if isinstance(table, dict) else None
    return value if isinstance(value, bool) else None


def with_thinking(state: dict[str, Any], path: str, on: bool) -> dict[str, bool]:
    """The per-model thinking table with ``path`` set to ``on``."""
    table = state.get("thinking")
    kept = {k: v for k, v in table.items() if isinstance(v, bool)} if isinstance(table, dict) else {}
    return {**kept, path: on}
