"""The message catalogue (slmchat/i18n): one TOML file per language, checked against
en.toml (every id, the same placeholders, texts that format; every test here runs over
every language file found, so a new language is one new file), forms by number, broken
files as one-line errors, the language setting, no unused ids, and a static check that
the converted modules hold no user-visible literals (they hold message ids)."""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from slmchat import i18n
from slmchat.config import Settings, load_settings
from slmchat.errors import SlmChatError
from slmchat.i18n import LANGUAGES, language_from_locale, resolve_language, set_language, t
from slmchat.i18n.catalogue import FOLDER as FOLDER_NAME
from slmchat.i18n.catalogue import (
    PLURAL_RULES,
    SOURCE,
    Catalogue,
    CatalogueError,
    available,
    fields,
    forms,
    load,
    problems,
)

FOLDER = Path(FOLDER_NAME)

ROOT = Path(__file__).resolve().parents[1] / "slmchat"

# Every module of the app is converted to the catalogue: no user-visible string literal.
CONVERTED = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tui").rglob("*.py"))
# Ids built at run time from a value: t(f"status.{status}") and the like.
DYNAMIC = ("status.", "role.", "curation.mark.", "curation.rated.", "insp.format.",
           "insp.label.", "textual.cmd.", "compare.schedule.", "compare.kept.",
           "compare.status.", "sampling.", "ft.state.", "cmd.", "models.col.", "models.task.",
           "models.progress.")

WORDS = re.compile(r"[A-Za-z]{2,}|[\u3040-\u30ff\u4e00-\u9fff]")
COMMAND = re.compile(r"/[a-z]+")  # /attach, /detach: the same in every language
# call name -> which positional arguments are shown to the user
SHOWN_ARGS = {"notify": (0,), "Label": (0,), "Static": (0,), "Button": (0,), "Text": (0,),
              "part": (0,), "TextPrompt": (0, 2), "Confirm": (0, 1), "TaskDone": (1,),
              "TaskProgress": (1,), "add_columns": tuple(range(10)), "add_row": (),
              "Option": (0,), "SystemCommand": (0, 1), "Checkbox": (0,), "update": (0,),
              "add_column": (0,), "title": (0,), "xlabel": (0,), "offer": (1,),
              "SlmChatError": (0,)}
SHOWN_KEYWORDS = {"placeholder", "title", "hint", "progress", "summary", "tooltip",
                  "label", "severity_title"}
SHOWN_ATTRS = {"border_title", "border_subtitle", "title", "sub_title"}


@pytest.fixture(autouse=True)
def english_after() -> Iterator[None]:
    yield
    set_language("en")


def english() -> Catalogue:
    return load(SOURCE)


def test_every_language_file_is_found() -> None:
    """A language is a file: the folder's *.toml are the languages, English first."""
    files = sorted(p.stem for p in FOLDER.glob("*.toml"))
    assert available() == LANGUAGES and LANGUAGES[0] == SOURCE
    assert sorted(LANGUAGES) == files and {"en", "ja"} <= set(files)
    assert ("auto", *LANGUAGES) == i18n.SETTING_VALUES


@pytest.mark.parametrize("code", available())
def test_every_language_has_every_id_with_the_same_placeholders(code: str) -> None:
    assert problems(load(code), english()) == []


@pytest.mark.parametrize("code", available())
def test_every_text_formats_in_every_plural_form(code: str) -> None:
    """Beyond the placeholders: each form of each message comes out through t()."""
    cat, source = load(code), english()
    rule = PLURAL_RULES[cat.plural]
    set_language(code)
    for msg_id, entry in source.messages.items():
        names = set().union(*(fields(f) for f in forms(entry)))
        for n in (0, 1, 2, 5, 11, 21, 22):  # every category of every rule here
            text = t(msg_id, **{**dict.fromkeys(names, 1), "n": n}) if names else t(msg_id)
            assert text.strip(), (code, msg_id, n)
            if isinstance(cat.messages[msg_id], dict):
                assert cat.category(n) in rule.categories


def test_the_checks_find_what_is_wrong(tmp_path: Path) -> None:
    """problems() itself: each kind of fault a translator can make is one line."""
    path = tmp_path / "xx.toml"
    path.write_text('''[language]
name = "Test"
plural = "one"
[messages]
"sidebar.found" = "{count} found"
"stats.tps" = "{tps:.1f}} tok/s"
"sidebar.title" = "  "
"files.skipped_title" = "Skipped {n} file(s)"
"no.such.id" = "x"
"dialog.ok" = { one = "OK", other = "OK" }
''', encoding="utf-8")
    found = problems(load("xx", path), english())
    def about(msg_id: str) -> list[str]:
        return [line for line in found if f"{msg_id!r}" in line]
    assert all(line.startswith("xx.toml: ") and "\n" not in line for line in found)
    assert "placeholders ['count']" in about("sidebar.found")[0]
    assert about("stats.tps")
    assert "empty" in about("sidebar.title")[0]
    assert "one text" in about("files.skipped_title")[0]  # English forms, plural "one"
    assert "not a message id" in about("no.such.id")[0]
    assert "no {n}" in about("dialog.ok")[0]
    assert "missing 'sidebar.search'" in "\n".join(found)


def test_japanese_entries_are_japanese() -> None:
    """A copied English text left in ja.toml is caught (units and keys aside)."""
    en, ja = english().messages, load("ja").messages
    same = {k for k, e in ja.items() if e == en[k]}
    assert same <= {"stats.tokens", "stats.tps", "dialog.ok", "task.exported_gguf",
                    "ft.stat.tps"}


# --- forms by number ----------------------------------------------------------------

def test_forms_by_number_follow_n() -> None:
    assert t("files.skipped_title", n=1) == "Skipped 1 file"
    assert t("files.skipped_title", n=0) == "Skipped 0 files"
    assert t("files.skipped_title", n=2) == "Skipped 2 files"
    assert t("chat.copied", n=1) == "Copied 1 character to the clipboard."
    assert t("train.exported", conversations=t("train.conversations", n=1),
             replies=t("train.replies", n=3), path="a.jsonl") == \
        "1 conversation, 3 replies to learn: a.jsonl"
    assert t("ft.few_eval", n=None, size=64).startswith("only None held-out blocks")
    set_language("ja")  # one form for every number
    assert t("files.skipped_title", n=1) == "1 件のファイルをスキップしました"
    assert t("files.skipped_title", n=3) == "3 件のファイルをスキップしました"
    assert t("train.exported", conversations=t("train.conversations", n=1),
             replies=t("train.replies", n=3), path="a.jsonl") == \
        "会話 1 件、学習する応答 3 件: a.jsonl"


@pytest.mark.parametrize(("rule", "counts"), [
    ("none", {"other": [0, 1, 2, 21]}),
    ("one", {"one": [1, -1], "other": [0, 2, 11, 21]}),
    ("zero-one", {"one": [0, 1], "other": [2, 21]}),
    ("east-slavic", {"one": [1, 21, 101], "few": [2, 4, 22, 34], "many": [0, 5, 11, 12, 14, 25]}),
])
def test_plural_rules(rule: str, counts: dict[str, list[int]]) -> None:
    cat = Catalogue(code="xx", name="x", plural=rule, messages={}, path="xx.toml")
    for category, ns in counts.items():
        assert [cat.category(n) for n in ns] == [category] * len(ns), category
    assert cat.category(1.5) == cat.category("1") == cat.category(None) == "other"
    assert "other" in PLURAL_RULES[rule].categories


def test_no_parenthesised_plurals_are_left() -> None:
    """ "file(s)" is a table of forms now, in every language file."""
    for code in available():
        for msg_id, entry in load(code).messages.items():
            for text in forms(entry):
                assert not re.search(r"\w\((s|es|ies)\)", text), (code, msg_id)


# --- a third language is one file; broken files are one line -------------------------

def test_a_new_language_is_one_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy of en.toml in a folder of language files: found, chosen by setting and by
    locale, its forms by number from its own rule."""
    import slmchat.i18n.catalogue as catalogue_module

    for p in FOLDER.glob("*.toml"):
        (tmp_path / p.name).write_bytes(p.read_bytes())
    ru = (FOLDER / "en.toml").read_text(encoding="utf-8")
    ru = ru.replace('name = "English"\nplural = "one"', 'name = "Русский"\nplural = "east-slavic"')
    ru = ru.replace('"files.skipped_title" = { one = "Skipped {n} file", other = "Skipped {n} files" }',
                    '"files.skipped_title" = { one = "Пропущен {n} файл", few = "Пропущено {n} файла", '
                    'many = "Пропущено {n} файлов", other = "Пропущено {n} файла" }')
    # every other message with forms: the same text for each category of the rule
    ru = re.sub(r'= \{ one = ("[^"]*"), other = ("[^"]*") \}',
                r'= { one = \1, few = \2, many = \2, other = \2 }', ru)
    (tmp_path / "ru.toml").write_text(ru, encoding="utf-8")
    monkeypatch.setattr(catalogue_module, "FOLDER", str(tmp_path))
    monkeypatch.setattr(i18n, "LANGUAGES", available())
    monkeypatch.setattr(i18n, "SETTING_VALUES", ("auto", *available()))
    monkeypatch.setattr(i18n, "_loaded", {})
    assert i18n.LANGUAGES == ("en", "ja", "ru")
    assert problems(load("ru"), english()) == []
    assert language_from_locale({"LANG": "ru_RU.UTF-8"}) == "ru"
    set_language("ru")
    assert [t("files.skipped_title", n=n) for n in (1, 3, 5)] == \
        ["Пропущен 1 файл", "Пропущено 3 файла", "Пропущено 5 файлов"]
    assert t("sidebar.title") == "Conversations"  # not translated yet: as in the copy
    assert Settings.model_validate({"ui": {"language": "ru"}}).ui.language == "ru"


def _broken(tmp_path: Path, text: str | bytes) -> str:
    path = tmp_path / "xx.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogueError) as info:
        load("xx", path)
    message = str(info.value)
    assert isinstance(info.value, SlmChatError)  # the CLI prints it as one line, exit 2
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


GOOD_HEAD = '[language]\nname = "X"\nplural = "one"\n[messages]\n'


@pytest.mark.parametrize(("text", "says"), [
    (GOOD_HEAD + '"a.b" = "unclosed\n', "not valid TOML: "),
    (GOOD_HEAD + '"a.b" = "x"\n"a.b" = "y"\n', "not valid TOML: "),  # the same id twice
    (GOOD_HEAD.encode() + b'"a.b" = "\xff"\n', "not UTF-8"),
    ('[messages]\n"a.b" = "x"\n', "no [language] table"),
    ('[language]\nname = "X"\nplural = "one"\n', "no [messages] table"),
    ('[language]\nname = "X"\nplural = "dual"\n[messages]\n', "plural = \'dual\' is not"),
    ('[language]\nname = "X"\nplural = "one"\ncode = "x"\n[messages]\n', "\'code\' in [language]"),
    ('[language]\nplural = "one"\n[messages]\n', "name must be"),
    (GOOD_HEAD + '"a.b" = 3\n', "\'a.b\' is int"),
    (GOOD_HEAD + '"a.b" = { one = "x" }\n', "needs one, other"),
    (GOOD_HEAD + '"a.b" = { one = "x", other = 2 }\n', "needs one, other"),
    ('title = "x"\n' + GOOD_HEAD, "unknown top-level entry \'title\'"),
])
def test_a_broken_language_file_is_one_line(tmp_path: Path, text: str | bytes, says: str) -> None:
    assert says in _broken(tmp_path, text)


def test_a_missing_language_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match=r"xx.toml: cannot read the language file"):
        load("xx", tmp_path / "xx.toml")


def test_set_language_reads_the_file_at_once(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken file fails at start, in set_language, not at the first t() in a widget."""
    import slmchat.i18n.catalogue as catalogue_module

    (tmp_path / "en.toml").write_bytes((FOLDER / "en.toml").read_bytes())
    (tmp_path / "ja.toml").write_text("[language\n", encoding="utf-8")
    monkeypatch.setattr(catalogue_module, "FOLDER", str(tmp_path))
    monkeypatch.setattr(i18n, "_loaded", {})
    with pytest.raises(CatalogueError, match=r"ja.toml: not valid TOML"):
        set_language("ja")
    assert i18n.get_language() == "en"


def test_the_cache_follows_the_file(tmp_path: Path) -> None:
    """A checked file is cached beside it; an edit is seen at once, a broken cache ignored."""
    path = tmp_path / "xx.toml"
    path.write_text(GOOD_HEAD + '"a.b" = "one"\n', encoding="utf-8")
    assert load("xx", path).messages == {"a.b": "one"}
    cache = tmp_path / "__pycache__" / "xx.toml.marshal"
    assert cache.is_file()
    path.write_text(GOOD_HEAD + '"a.b" = "two, longer"\n', encoding="utf-8")
    assert load("xx", path).messages == {"a.b": "two, longer"}
    cache.write_bytes(b"garbage")
    assert load("xx", path).messages == {"a.b": "two, longer"}
    path.write_text(GOOD_HEAD + '"a.b" = 3\n', encoding="utf-8")  # broken after a good one
    with pytest.raises(CatalogueError):
        load("xx", path)


def test_a_read_only_folder_still_loads(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    path = tmp_path / "xx.toml"
    path.write_text(GOOD_HEAD + '"a.b" = "one"\n', encoding="utf-8")
    tmp_path.chmod(0o555)
    try:
        assert load("xx", path).messages == {"a.b": "one"}
    finally:
        tmp_path.chmod(0o755)


def test_the_check_command(capsys: pytest.CaptureFixture[str]) -> None:
    from slmchat.i18n.__main__ import main

    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: en.toml") and all(f"{c}.toml" in out for c in available())
    assert main(["check", "zz"]) == 1
    assert "zz.toml: cannot read" in capsys.readouterr().out
    assert main([]) == 2


def test_the_language_files_ship_with_the_package() -> None:
    """pyproject's package-data names them (a wheel without them cannot start)."""
    import tomllib

    pyproject = tomllib.loads((ROOT.parent / "pyproject.toml").read_text(encoding="utf-8"))
    assert "i18n/*.toml" in pyproject["tool"]["setuptools"]["package-data"]["slmchat"]


def _source_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in ROOT.rglob("*.py")
                     if p.parent.name != "i18n")  # its docstrings name ids as examples


def test_no_unused_ids() -> None:
    source = _source_text()
    binding_ids = set(re.findall(r'\bid="([a-z_]+\.[a-z_]+)"', source))
    unused = []
    for msg_id in english().messages:
        if msg_id.startswith("key.textual."):  # by action: i18n.TEXTUAL_ACTIONS
            used = msg_id.removesuffix(".tooltip") in i18n.TEXTUAL_ACTIONS.values()
        elif msg_id.startswith("key."):
            used = msg_id[4:] in binding_ids
        else:
            used = f'"{msg_id}"' in source or msg_id.startswith(DYNAMIC)
        if not used:
            unused.append(msg_id)
    assert unused == []


def test_ids_used_in_the_code_exist() -> None:
    tree_ids = set()
    for rel in CONVERTED:
        for node in ast.walk(ast.parse((ROOT / rel).read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "t" and node.args
                    and isinstance(node.args[0], ast.Constant)):
                tree_ids.add(node.args[0].value)
    assert tree_ids and tree_ids <= set(english().messages)


def _shown(node: ast.expr) -> str:
    """The literal text of a str constant or f-string (what the user would read)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value for v in node.values
                       if isinstance(v, ast.Constant) and isinstance(v.value, str))
    return ""


def _is_words(text: str) -> bool:
    return bool(WORDS.search(COMMAND.sub("", text)))


def _call_name(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def literals_shown(source: str) -> list[str]:
    """User-visible literals in widget calls, notifications and titles of ``source``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = _call_name(node)
            for i in SHOWN_ARGS.get(name, ()):
                if i < len(node.args) and _is_words(_shown(node.args[i])):
                    found.append(f"{node.lineno}: {name}({_shown(node.args[i])!r})")
            if name in SHOWN_ARGS or name in ("Input", "TextArea"):
                for kw in node.keywords:
                    if kw.arg in SHOWN_KEYWORDS and _is_words(_shown(kw.value)):
                        found.append(f"{node.lineno}: {name}({kw.arg}={_shown(kw.value)!r})")
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if (isinstance(target, ast.Attribute) and target.attr in SHOWN_ATTRS
                        and _is_words(_shown(node.value))):
                    found.append(f"{node.lineno}: .{target.attr} = {_shown(node.value)!r}")
    return found


def bindings_without_translation(source: str) -> list[str]:
    """Bindings with a description but no ``key.<id>`` entry (or no id at all)."""
    missing = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and _call_name(node) == "Binding" and len(node.args) >= 3:
            ids = [_shown(k.value) for k in node.keywords if k.arg == "id"]
            if not ids or f"key.{ids[0]}" not in english().messages:
                missing.append(f"{node.lineno}: {_shown(node.args[2])!r}")
    return missing


@pytest.mark.parametrize("rel", CONVERTED)
def test_converted_modules_show_no_literals(rel: str) -> None:
    source = (ROOT / rel).read_text(encoding="utf-8")
    assert literals_shown(source) == []
    assert bindings_without_translation(source) == []


def test_the_static_check_finds_literals() -> None:
    """The checker itself: each kind of literal it must catch."""
    source = '''
self.notify("Saved.")
self.notify(f"Exported to {path}", title="Export")
yield Label("Sources:")
yield Input(placeholder="Search")
self.border_title = "Conversations"
Binding("f2", "rename", "Rename")
self.notify(t("ok"), title="/attach")
yield Static("  ")
'''
    assert len(literals_shown(source)) == 6
    assert len(bindings_without_translation(source)) == 1


def test_t_follows_the_language_and_fills_placeholders() -> None:
    assert t("sidebar.found", n=3) == "3 found"
    set_language("ja")
    assert t("sidebar.found", n=3) == "3 件"
    assert t("stats.tps", tps=12.345) == "12.3 tok/s"
    assert i18n.get_language() == "ja"


@pytest.mark.parametrize(("env", "lang"), [
    ({"LANG": "ja_JP.UTF-8"}, "ja"),
    ({"LANG": "ja"}, "ja"),
    ({"LC_MESSAGES": "ja_JP.eucJP", "LANG": "en_US.UTF-8"}, "ja"),
    ({"LC_ALL": "C.UTF-8", "LANG": "ja_JP.UTF-8"}, "en"),  # LC_ALL wins
    ({"LC_ALL": "", "LANG": "ja_JP.UTF-8"}, "ja"),  # an empty variable is unset
    ({"LANG": "en_GB.UTF-8"}, "en"),
    ({}, "en"),
])
def test_language_from_locale(env: dict[str, str], lang: str) -> None:
    assert language_from_locale(env) == lang
    assert resolve_language("auto", env) == lang


def test_explicit_language_beats_the_locale() -> None:
    assert resolve_language("en", {"LANG": "ja_JP.UTF-8"}) == "en"
    assert resolve_language("ja", {"LANG": "C"}) == "ja"
    with pytest.raises(ValueError, match="unknown language 'fr'"):
        resolve_language("fr")


def test_language_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLMCHAT_UI__LANGUAGE", raising=False)
    assert Settings().ui.language == "auto"
    path = tmp_path / "settings.toml"
    path.write_text('[ui]\nlanguage = "ja"\n', encoding="utf-8")
    settings, problem = load_settings(path)
    assert settings.ui.language == "ja" and problem is None
    path.write_text('[ui]\nlanguage = "jp"\n', encoding="utf-8")
    settings, problem = load_settings(path)
    assert settings.ui.language == "auto"
    assert problem is not None and "\n" not in problem
    assert "ui.language" in problem and "'ja'" in problem
    monkeypatch.setenv("SLMCHAT_UI__LANGUAGE", "ja")
    assert load_settings(tmp_path / "none.toml")[0].ui.language == "ja"


def test_textual_system_commands_are_translated() -> None:
    from textual.app import SystemCommand

    cmds = [SystemCommand("Quit", "Quit the application as soon as possible", print),
            SystemCommand("Models", "ours, already translated by the app", print)]
    assert list(i18n.localize_system_commands(cmds)) == cmds
    set_language("ja")
    out = list(i18n.localize_system_commands(cmds))
    assert out[0].title == "終了" and out[0].help == "アプリを終了します"
    assert out[1] == cmds[1]


def test_the_engine_does_not_import_the_catalogue() -> None:
    """slmchat.i18n is a UI concern (import-linter also forbids it); and it does not
    import Textual, so the CLI can use it without the app."""
    import subprocess
    import sys

    code = ("import sys, slmchat.i18n, slmchat.engine.session; "
            "print('textual' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
