"""The app's words in every language: one TOML file per language here, one lookup.

``t("sidebar.title")`` returns the text in the language chosen once at start
(``set_language(resolve_language(settings.ui.language))``); ``t("x", n=3)`` fills the
``{n}`` placeholders, and a message with forms by number (``{ one = "{n} file", other =
"{n} files" }`` in en.toml) takes the form for ``n``. Widgets never hold user-visible
literals: they hold message ids. The files (en.toml, ja.toml, ...) are data a translator
edits without Python; a new language is one new file (see the header of en.toml and
catalogue.py). A file is read on first use, once; ``set_language`` reads the chosen one,
so a broken file is one line at start (``CatalogueError``), not a traceback later.

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
from typing import Any

from slmchat.i18n.catalogue import SOURCE, Catalogue, CatalogueError, Text, available, load

__all__ = ["LANGUAGES", "SETTING_VALUES", "CatalogueError", "get_catalogue", "get_language", "has",
           "language_from_locale", "localize_bindings", "localize_system_commands",
           "resolve_language", "set_language", "t"]

Language = str  # a language code with a file here: "en", "ja", ...
LANGUAGES: tuple[Language, ...] = available()  # English first
SETTING_VALUES = ("auto", *LANGUAGES)
LOCALE_VARS = ("LC_ALL", "LC_MESSAGES", "LANG")  # POSIX precedence, first set wins

_language: Language = SOURCE
_loaded: dict[Language, Catalogue] = {}
# Textual's own bindings have no id: their descriptions are found by action.
TEXTUAL_ACTIONS = {"command_palette": "key.textual.palette",
                   "app.command_palette": "key.textual.palette"}


def language_from_locale(env: Mapping[str, str] | None = None) -> Language:
    """The language of the locale when it has a file here ("ja" for ja_JP.UTF-8), else "en"."""
    env = os.environ if env is None else env
    for var in LOCALE_VARS:
        value = env.get(var, "")
        if value:
            code = value.lower().replace("-", "_").split(".")[0].split("@")[0].split("_")[0]
            return code if code in LANGUAGES else SOURCE
    return SOURCE


def resolve_language(setting: str, env: Mapping[str, str] | None = None) -> Language:
    """The language for ``ui.language``: "auto" follows the locale."""
    if setting == "auto":
        return language_from_locale(env)
    if setting not in LANGUAGES:
        raise ValueError(f"unknown language {setting!r}: use one of {', '.join(SETTING_VALUES)}")
    return setting


def get_catalogue(language: Language) -> Catalogue:
    """The messages of ``language``, read from its file the first time (then kept)."""
    cat = _loaded.get(language)
    if cat is None:
        cat = _loaded[language] = load(language)
    return cat


def set_language(language: str) -> None:
    """Choose the language once at start (tests switch it; the default is English). Its
    file is read now: a broken one raises ``CatalogueError`` here, with one line."""
    global _language
    resolved = resolve_language(language)
    get_catalogue(resolved)
    _language = resolved


def get_language() -> Language:
    return _language


def t(msg_id: str, **fmt: Any) -> str:
    """The message ``msg_id`` in the current language, ``{placeholders}`` filled; for a
    message with forms by number, the form for ``n``. English when the language lacks it."""
    text = get_catalogue(_language).text(msg_id, fmt.get("n"))
    if text is None:
        text = get_catalogue(SOURCE).text(msg_id, fmt.get("n"))
        if text is None:
            raise KeyError(msg_id)
    return text.format(**fmt) if fmt else text


def has(msg_id: str) -> bool:
    return msg_id in get_catalogue(_language).messages or msg_id in get_catalogue(SOURCE).messages


def __getattr__(name: str) -> dict[str, dict[Language, Text]]:
    """``CATALOGUE`` as it was (id -> {language: text}), built from every file on use."""
    if name != "CATALOGUE":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    merged: dict[str, dict[Language, Text]] = {}
    for language in LANGUAGES:
        for msg_id, entry in get_catalogue(language).messages.items():
            merged.setdefault(msg_id, {})[language] = entry
    return merged


def localize_bindings(node: Any) -> None:
    """Give ``node``'s key bindings the current language's descriptions.

    Call it in ``__init__`` after ``super().__init__()``: Textual copies the class's
    merged bindings into ``node._bindings`` there. A binding is translated when it has an
    id and the catalogue has ``key.<id>``; keymaps (``[ui] keys``) replace bindings with
    ``dataclasses.replace``, so the translated description stays.
    """
    if _language == SOURCE:
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
        if _language != SOURCE and has(key):
            cmd = cmd._replace(title=t(key), help=t(f"{key}.help")
                               if has(f"{key}.help") else cmd.help)
        yield cmd
