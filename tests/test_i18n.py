"""The message catalogue (slmchat/i18n): both languages for every id, the same
placeholders, no unused ids, the language setting, and a static check that the converted
modules hold no user-visible literals (they hold message ids)."""

from __future__ import annotations

import ast
import re
import string
from collections.abc import Iterator
from pathlib import Path

import pytest

from slmchat import i18n
from slmchat.config import Settings, load_settings
from slmchat.i18n import CATALOGUE, language_from_locale, resolve_language, set_language, t

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


def fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_every_id_has_both_languages_with_the_same_placeholders() -> None:
    for msg_id, entry in CATALOGUE.items():
        assert set(entry) == {"en", "ja"}, msg_id
        assert entry["en"].strip() and entry["ja"].strip(), msg_id
        assert fields(entry["en"]) == fields(entry["ja"]), msg_id
        dummy = dict.fromkeys(fields(entry["en"]), 1)
        for lang in ("en", "ja"):  # format specs ({tps:.1f}) accept a number
            entry[lang].format(**dummy)


def test_japanese_entries_are_japanese() -> None:
    """A copied English text left in the ja column is caught (units and keys aside)."""
    same = {k for k, e in CATALOGUE.items() if e["en"] == e["ja"]}
    assert same <= {"stats.tokens", "stats.tps", "dialog.ok", "task.exported_gguf",
                    "ft.stat.tps"}


def _source_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in ROOT.rglob("*.py")
                     if p.name != "catalogue.py")


def test_no_unused_ids() -> None:
    source = _source_text()
    binding_ids = set(re.findall(r'\bid="([a-z_]+\.[a-z_]+)"', source))
    unused = []
    for msg_id in CATALOGUE:
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
    assert tree_ids and tree_ids <= set(CATALOGUE)


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
            if not ids or f"key.{ids[0]}" not in CATALOGUE:
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
