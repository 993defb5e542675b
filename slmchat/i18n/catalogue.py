"""The message catalogue: one TOML file per language in this folder, read on first use.

``en.toml`` is the source language: it defines the ids, their ``{placeholders}`` and which
messages have forms by number; any id another language lacks falls back to it. A file is

    [language]
    name = "日本語"          # the language's own name
    plural = "none"          # which forms a number takes: a name from PLURAL_RULES

    [messages]
    "sidebar.title" = "会話"
    "files.skipped_title" = "{n} 件のファイルをスキップしました"

A message is a string, or a table of plural forms chosen by its ``n`` argument (the
categories of the file's rule, named as in CLDR: one, few, many, other), as in en.toml:
``"files.skipped_title" = { one = "Skipped {n} file", other = "Skipped {n} files" }``;
a language with one form (plural = "none") may write the one text alone. ``load`` checks
the shape of one file and raises ``CatalogueError`` (one line: the file and the problem);
``problems`` checks one language against English (the same ids, the same placeholders,
texts that format), for the tests and ``python -m slmchat.i18n check``. ``tomllib`` is
imported on first load, not with the package, and a checked file is cached (``load``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import NamedTuple

from slmchat.errors import SlmChatError

# Paths are str (os.path), not pathlib: importing pathlib costs more than loading a
# cached language file, and this runs before the app's first frame.
FOLDER = os.path.dirname(os.path.abspath(__file__))
SOURCE = "en"  # the language the ids are written for, and the fallback

Text = str | dict[str, str]  # one text, or plural forms by category


class CatalogueError(SlmChatError):
    """A language file is missing, is not TOML, or does not have a catalogue's shape."""


def _east_slavic(n: int) -> str:
    if n % 10 == 1 and n % 100 != 11:
        return "one"
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return "few"
    return "many"


class PluralRule(NamedTuple):
    categories: tuple[str, ...]  # CLDR names; every rule has "other"
    choose: Callable[[int], str]
    languages: str  # which languages take it, for people


PLURAL_RULES: dict[str, PluralRule] = {
    "none": PluralRule(("other",), lambda n: "other", "Japanese, Chinese, Korean, ..."),
    "one": PluralRule(("one", "other"), lambda n: "one" if n == 1 else "other",
                      "English, German, Spanish, Italian, Dutch, ..."),
    "zero-one": PluralRule(("one", "other"), lambda n: "one" if n in (0, 1) else "other",
                           "French, Brazilian Portuguese, ..."),
    "east-slavic": PluralRule(("one", "few", "many", "other"), _east_slavic,
                              "Russian, Ukrainian (other: fractions)"),
}


class Catalogue:
    """One language's messages, as its file holds them. (A plain class: a dataclass
    costs more to define than the rest of the import, and this is made once a language.)"""

    __slots__ = ("code", "messages", "name", "path", "plural")

    def __init__(self, *, code: str, name: str, plural: str, messages: dict[str, Text],
                 path: str) -> None:
        self.code, self.name, self.plural, self.messages, self.path = (
            code, name, plural, messages, path)

    @property
    def file(self) -> str:
        """The file's name (ja.toml), for messages."""
        return os.path.basename(self.path)

    def __repr__(self) -> str:
        return f"Catalogue({self.code!r}, {len(self.messages)} messages, {self.path})"

    def text(self, msg_id: str, count: object = None) -> str | None:
        """The text of ``msg_id`` (the form for ``count`` when it has forms), or None."""
        entry = self.messages.get(msg_id)
        if entry is None or isinstance(entry, str):
            return entry
        return entry[self.category(count)]

    def category(self, count: object) -> str:
        """The plural category of ``count``; "other" when it is not a whole number."""
        if isinstance(count, bool) or not isinstance(count, int):
            return "other"  # every rule has it (CLDR: fractions, unknown counts)
        return PLURAL_RULES[self.plural].choose(abs(count))


def language_path(code: str) -> str:
    return os.path.join(FOLDER, f"{code}.toml")


def available() -> tuple[str, ...]:
    """The language codes with a file here, English first."""
    codes = sorted(name[:-5] for name in os.listdir(FOLDER) if name.endswith(".toml"))
    return (SOURCE, *(c for c in codes if c != SOURCE)) if SOURCE in codes else tuple(codes)


def load(code: str, path: str | os.PathLike[str] | None = None) -> Catalogue:
    """Read and check one language file; ``CatalogueError`` names the file and the problem.

    The checked messages are kept in ``__pycache__/<code>.toml.marshal`` beside the file
    (as Python keeps bytecode), valid while the file's size and mtime are the same: the
    next start reads that in well under a millisecond instead of parsing the TOML. Where
    the folder is read-only the file is parsed each time."""
    path = language_path(code) if path is None else os.fspath(path)
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise CatalogueError(f"{path}: cannot read the language file ({exc.strerror or exc})") \
            from None
    stamp = (CACHE_FORMAT, stat.st_size, stat.st_mtime_ns)
    cached = _read_cache(path, stamp)
    if cached is None:
        cached = _shape(_parse(path), path)
        _write_cache(path, stamp, cached)
    name, plural, messages = cached
    return Catalogue(code=code, name=name, plural=plural, messages=messages, path=path)


CACHE_FORMAT = 1  # bump when the cached shape or the checks in _shape change
Shaped = tuple[str, str, dict[str, Text]]


def _cache_path(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.join(folder, "__pycache__", f"{name}.marshal")


def _read_cache(path: str, stamp: tuple[int, int, int]) -> Shaped | None:
    import marshal

    try:
        with open(_cache_path(path), "rb") as fh:
            data = marshal.loads(fh.read())
    except (OSError, ValueError, EOFError, TypeError):
        return None
    if not (isinstance(data, tuple) and len(data) == 2 and data[0] == stamp):
        return None
    return data[1]  # type: ignore[no-any-return]


def _write_cache(path: str, stamp: tuple[int, int, int], shaped: Shaped) -> None:
    import marshal
    import tempfile

    target = _cache_path(path)
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target),
                                   prefix=f".{os.path.basename(path)}.")
        try:
            os.fchmod(fd, 0o644)  # readable like the .pyc beside it
            with os.fdopen(fd, "wb") as fh:
                fh.write(marshal.dumps((stamp, shaped)))
            os.replace(tmp, target)  # whole or not at all: two starts at once are safe
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass  # a read-only install: parse each time


def _parse(path: str) -> Mapping[str, object]:
    import tomllib  # here, not at import: the package is imported before the first frame

    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise CatalogueError(f"{path}: cannot read the language file ({exc.strerror or exc})") \
            from None
    except UnicodeDecodeError as exc:
        raise CatalogueError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"{path}: not valid TOML: {exc}") from None


def _shape(data: Mapping[str, object], path: str) -> Shaped:
    def fail(problem: str) -> CatalogueError:
        return CatalogueError(f"{path}: {problem}")

    extra = set(data) - {"language", "messages"}
    if extra:
        raise fail(f"unknown top-level entry {sorted(extra)[0]!r}: a language file holds "
                   "[language] and [messages] only")
    lang, messages = data.get("language"), data.get("messages")
    if not isinstance(lang, dict):
        raise fail("no [language] table (name and plural)")
    if not isinstance(messages, dict):
        raise fail("no [messages] table")
    extra = set(lang) - {"name", "plural"}
    if extra:
        raise fail(f"unknown entry {sorted(extra)[0]!r} in [language]: use name and plural")
    name, plural = lang.get("name"), lang.get("plural")
    if not isinstance(name, str) or not name.strip():
        raise fail("[language] name must be the language's name as text")
    if plural not in PLURAL_RULES:
        raise fail(f"[language] plural = {plural!r} is not a plural rule: use one of "
                   f"{', '.join(repr(r) for r in PLURAL_RULES)}")
    rule = PLURAL_RULES[plural]
    for msg_id, entry in messages.items():
        if isinstance(entry, str):
            continue
        if not isinstance(entry, dict):
            raise fail(f"message {msg_id!r} is {type(entry).__name__}: write text in quotes, "
                       "or a table of plural forms")
        if set(entry) != set(rule.categories) or not all(isinstance(v, str)
                                                         for v in entry.values()):
            raise fail(f"message {msg_id!r} has forms {', '.join(entry) or 'none'}: plural "
                       f"{plural!r} needs {', '.join(rule.categories)}, each a text")
    return name, plural, messages


def fields(text: str) -> set[str]:
    """The placeholder names of a format string."""
    import string

    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def forms(entry: Text) -> list[str]:
    return [entry] if isinstance(entry, str) else list(entry.values())


def problems(cat: Catalogue, source: Catalogue) -> list[str]:
    """What is wrong with ``cat`` measured against the source language, one line each:
    missing or unknown ids, empty texts, other placeholders than the source's, forms by
    number on a message without ``{n}``, texts that do not format."""
    found = [f"{cat.file}: missing {msg_id!r}" for msg_id in source.messages
             if msg_id not in cat.messages]
    for msg_id, entry in cat.messages.items():
        where = f"{cat.file}: {msg_id!r}"
        if msg_id not in source.messages:
            found.append(f"{where} is not a message id of {source.file}")
            continue
        want = set().union(*(fields(f) for f in forms(source.messages[msg_id])))
        texts = forms(entry)
        try:
            have = set().union(*(fields(f) for f in texts))
        except ValueError as exc:  # an unmatched { or }
            found.append(f"{where}: {exc}")
            continue
        if not all(f.strip() for f in texts):
            found.append(f"{where} is empty")
        if have != want:
            found.append(f"{where} has placeholders {sorted(have)}, {source.file} "
                         f"has {sorted(want)}")
            continue
        if isinstance(entry, dict) and "n" not in want:
            found.append(f"{where} has forms by number but no {{n}} to count by")
        rule = PLURAL_RULES[cat.plural]
        if (isinstance(entry, str) and isinstance(source.messages[msg_id], dict)
                and len(rule.categories) > 1):
            found.append(f"{where} is one text; plural {cat.plural!r} needs forms "
                         f"{', '.join(rule.categories)}")
        dummy = dict.fromkeys(want, 1)  # format specs ({tps:.1f}) accept a number
        for text in texts:
            try:
                text.format(**dummy)
            except (ValueError, IndexError, KeyError) as exc:
                found.append(f"{where} does not format: {exc}")
    return found
