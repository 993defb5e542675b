"""Remappable keys: ``[ui] keys`` in settings.toml maps binding ids to keys (Textual
keymaps), e.g. ``keys = { "chat.regenerate" = "f6", "chat.compare" = "ctrl+k" }``.

Every binding the app defines has an id ``area.name``; ``binding_ids()`` lists them
(README: "Keys"). Unknown ids are reported, not silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from textual.binding import Binding

from slmchat.tui.screens.chat import ChatScreen
from slmchat.tui.screens.compare import CompareScreen
from slmchat.tui.screens.prompt_inspector import PromptInspector
from slmchat.tui.widgets.chat_log import ChatLog
from slmchat.tui.widgets.side_panel import SidePanel

KEYED = (ChatScreen, ChatLog, PromptInspector, CompareScreen, SidePanel)


def binding_ids(extra: Iterable[object] = ()) -> dict[str, Binding]:
    """id -> Binding for every remappable binding (``extra``: more BINDINGS lists)."""
    out: dict[str, Binding] = {}
    for cls in KEYED:
        for klass in reversed(cls.__mro__):
            for b in klass.__dict__.get("BINDINGS", ()):
                if isinstance(b, Binding) and b.id:
                    out[b.id] = b
    for b in extra:
        if isinstance(b, Binding) and b.id:
            out[b.id] = b
    return out


def split_keymap(keys: Mapping[str, str], known: Mapping[str, Binding]
                 ) -> tuple[dict[str, str], list[str]]:
    """(the entries to apply, the ids nobody has)."""
    good = {k: str(v) for k, v in keys.items() if k in known and str(v).strip()}
    return good, sorted(k for k in keys if k not in known)
