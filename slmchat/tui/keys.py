"""Remappable keys: ``[ui] keys`` in settings.toml maps binding ids to keys (Textual
keymaps), e.g. ``keys = { "chat.regenerate" = "f6", "chat.compare" = "ctrl+k" }``.

Every binding the app defines has an id ``area.name``; ``binding_ids()`` lists them
(README: "Keys"). Unknown ids are reported, not silently ignored.
"""

from __future__ import annotations

import functools
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


MODIFIERS = frozenset(("ctrl", "shift", "alt", "meta", "super", "hyper"))


@functools.cache
def _key_names() -> frozenset[str]:
    """Textual's names for keys that are not one character: f6, pageup, full_stop, ..."""
    from textual.keys import KEY_ALIASES, KEY_NAME_REPLACEMENTS, Keys

    names = {k.value for k in Keys if not k.value.startswith("<")}
    names |= set(KEY_NAME_REPLACEMENTS.values()) | set(KEY_ALIASES)
    for aliases in KEY_ALIASES.values():
        names |= set(aliases)
    return frozenset(n.rsplit("+", 1)[-1] for n in names)


def key_problem(value: object) -> str | None:
    """Why a binding's keys ("f6", "ctrl+k,ctrl+l") cannot work, or None: an empty value
    or list item would silently take the key away, a typo would bind nothing."""
    from textual.keys import key_to_character

    if not isinstance(value, str):
        return "not text"
    parts = [p.strip() for p in value.split(",")]
    if not any(parts):
        return "no key given"
    for part in parts:
        *mods, name = part.split("+")
        shown = repr(part if len(part) <= 40 else part[:40] + "…")
        if not part or not name or len(name) > 80 or any(m not in MODIFIERS for m in mods):
            return f"{shown} is not a key"
        if not ((len(name) == 1 and name.isprintable()) or name in _key_names()
                or key_to_character(name) is not None):
            return f"{shown} is not a key"
    return None


def split_keymap(keys: Mapping[str, str], known: Mapping[str, Binding]
                 ) -> tuple[dict[str, str], list[str], dict[str, str]]:
    """(the entries to apply, the ids nobody has, id -> why its keys cannot work)."""
    bad = {k: why for k, v in keys.items() if k in known and (why := key_problem(v))}
    good = {k: str(v) for k, v in keys.items() if k in known and k not in bad}
    return good, sorted(k for k in keys if k not in known), bad
