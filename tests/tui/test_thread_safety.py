"""Thread workers never touch widgets: they post a Message (tui/messages.py) instead.

A static check over every ``@work(thread=True)`` method in slmchat/tui: no DOM queries,
no widget updates, no notifications, and no ``call_from_thread`` either (messages keep the
worker testable with ``message_hook``). Messages posted from workers are all defined in
``slmchat/tui/messages.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import slmchat.tui
import slmchat.tui.messages as messages

TUI = Path(slmchat.tui.__file__).parent
FORBIDDEN = {"query_one", "query", "query_children", "mount", "remove", "update", "refresh",
             "notify", "focus", "call_from_thread", "push_screen", "dismiss"}


def thread_workers() -> list[tuple[str, ast.FunctionDef]]:
    found = []
    for path in sorted(TUI.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef):
                continue
            for dec in node.decorator_list:
                if (isinstance(dec, ast.Call) and getattr(dec.func, "id", "") == "work"
                        and any(k.arg == "thread" and getattr(k.value, "value", None) is True
                                for k in dec.keywords)):
                    found.append((f"{path.relative_to(TUI)}:{node.name}", node))
    return found


def test_there_are_thread_workers_to_check() -> None:
    names = {name for name, _ in thread_workers()}
    assert {"app.py:_load_worker", "screens/chat.py:_generate",
            "screens/finetune.py:_start_worker",
            "screens/models.py:_scan"} <= names


def test_thread_workers_touch_no_widget() -> None:
    bad = []
    for name, fn in thread_workers():
        for node in ast.walk(fn):
            if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN:
                bad.append(f"{name} uses .{node.attr} (line {node.lineno})")
            if isinstance(node, ast.Attribute) and node.attr == "append" and isinstance(
                    node.value, ast.Attribute) and node.value.attr == "_procs":
                bad.append(f"{name} changes the process list (line {node.lineno})")
    assert bad == []


def test_messages_posted_from_workers_are_defined_in_messages_py() -> None:
    defined = {n for n in dir(messages) if isinstance(getattr(messages, n), type)}
    posted: set[str] = set()
    for path in sorted(TUI.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args \
                    and isinstance(node.args[0], ast.Call) \
                    and isinstance(node.args[0].func, ast.Name) and node.func.id == "post":
                posted.add(node.args[0].func.id)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "post_message" and node.args \
                    and isinstance(node.args[0], ast.Call) \
                    and isinstance(node.args[0].func, ast.Name):
                posted.add(node.args[0].func.id)
    assert posted and posted <= defined, posted - defined
    # Classes defined elsewhere in slmchat/tui that subclass Message are widget-local
    # events (e.g. PromptBox.Submitted), posted from the UI thread, not by workers.
    local = [n.name for p in TUI.rglob("*.py") if p.name != "messages.py"
             for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
             if isinstance(n, ast.ClassDef) and any(getattr(b, "id", "") == "Message"
                                                    for b in n.bases)
             and n.name not in ("Submitted", "Saved", "Selected", "CopyRequested",
                                "EditRequested", "Open", "EditorRequested", "InspectRequested",
                                "BranchRequested", "Chosen", "Closed", "UseModel",
                                "Resized", "Clicked", "Changed", "RunEnded", "TintChanged")]
    assert local == []
