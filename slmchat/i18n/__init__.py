"""The app's words in English and Japanese: one catalogue (``catalogue.py``), one lookup.

``t("sidebar.title")`` returns the text in the language chosen once at start
(``set_language(resolve_language(settings.ui.language))``); ``t("x", n=3)`` fills the
``{n}`` placeholders. Widgets never hold user-visible literals: they hold message ids.

Key bindings keep an English description in their ``BINDINGS`` (Textual builds them when
the class is defined); ``localize_bindings(self)`` in a widget's ``__init__`` swaps the
description for ``t("key.<binding id>")`` on that instance.

Textual's own words, from the app (tests/tui/test_japanese.py runs this recipe):
``localize_bindings(self)`` in ``App.__init__`` (the palette key), ``yield from
localize_system_commands(super().get_system_commands(screen))`` and a
``CommandPalette(placeholder=t("palette.placeholder"))`` in ``action_command_palette``.

Nothing here imports Textual or the engine, and the engine never imports this.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from slmchat.i18n.catalogue import CATALOGUE

Language = Literal["en", "ja"]
LANGUAGES: tuple[Language, ...] = ("en", "ja")
SETTING_VALUES = ("auto", *LANGUAGES)
LOCALE_VARS = ("LC_ALL", "LC_MESSAGES", "LANG")  # POSIX precedence, first set wins

_language: Language = "en"
# Textual's own bindings have no id: their descriptions are found by action.
TEXTUAL_ACTIONS = {"command_palette": "key.textual.palette",
                   "app.command_palette": "key.textual.palette"}


def language_from_locale(env: Mapping[str, str] | None = None) -> Language:
    """"ja" when the locale says Japanese (ja_JP.UTF-8, ja, ...), else "en"."""
    env = os.environ if env is None else env
    for var in LOCALE_VARS:
        value = env.get(var, "")
        if value:
            return "ja" if value.lower().startswith("ja") else "en"
    return "en"


def resolve_language(setting: str, env: Mapping[str, str] | None = None) -> Language:
    """The language for ``ui.language``: "auto" follows the locale."""
    if setting == "auto":
        return language_from_locale(env)
    if setting not in LANGUAGES:
        raise ValueError(f"unknown language {setting!r}: use one of {', '.join(SETTING_VALUES)}")
    return setting  # type: ignore[return-value]


def set_language(language: str) -> None:
    """Choose the language once at start (tests switch it; the default is English)."""
    global _language
    _language = resolve_language(language)


def get_language() -> Language:
    return _language


def t(msg_id: str, **fmt: Any) -> str:
    """The message ``msg_id`` in the current language, ``{placeholders}`` filled."""
    entry = CATALOGUE[msg_id]
    text = entry.get(_language) or entry["en"]
    return text.format(**fmt) if fmt else text


def has(msg_id: str) -> bool:
    return msg_id in CATALOGUE


def localize_bindings(node: Any) -> None:
    """Give ``node``'s key bindings the current language's descriptions.

    Call it in ``__init__`` after ``super().__init__()``: Textual copies the class's
    merged bindings into ``node._bindings`` there. A binding is translated when it has an
    id and the catalogue has ``key.<id>``; keymaps (``[ui] keys``) replace bindings with
    ``dataclasses.replace``, so the translated description stays.
    """
    if _language == "en":
        return
    mapping = node._bindings.key_to_bindings
    for key, bindings in list(mapping.items()):
        mapping[key] = [_localized(b) for b in bindings]


def _localized(binding: Any) -> Any:
    msg_id = f"key.{binding.id}" if binding.id else TEXTUAL_ACTIONS.get(binding.action, "")
    if not has(msg_id):
        return binding
    tooltip = f"{msg_id}.tooltip"
    return dataclasses.replace(binding, description=t(msg_id),
                               tooltip=t(tooltip) if has(tooltip) else binding.tooltip)


def localize_system_commands(commands: Iterable[Any]) -> Iterable[Any]:
    """Textual's own palette commands (Theme, Quit, Keys, ...) with translated title
    and help; for ``App.get_system_commands``. Unknown ones pass through."""
    for cmd in commands:
        key = f"textual.cmd.{cmd.title}"
        if _language != "en" and has(key):
            cmd = cmd._replace(title=t(key), help=t(f"{key}.help")
                               if has(f"{key}.help") else cmd.help)
        yield cmd
