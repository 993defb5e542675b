"""Ctrl+E in a prompt box: write the prompt to a private temp file, suspend the app, run
``$VISUAL`` / ``$EDITOR`` (else ``vi``) on it, and put the saved text back.

For long prompts: the text box is fine for a line or two, an editor for a page.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from slmchat.i18n import t


def editor_command(env: dict[str, str] | None = None) -> list[str]:
    env = dict(os.environ) if env is None else env
    return shlex.split(env.get("VISUAL") or env.get("EDITOR") or "vi")


def edit_in_editor(app: Any, text: str) -> str | None:
    """The text after the user edited it, or None (no editor, it failed, or the app
    cannot be suspended here); the reason is shown as a notification."""
    fd, name = tempfile.mkstemp(prefix="slmchat-prompt-", suffix=".md")  # mode 0600
    path = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        command = editor_command()
        try:
            with app.suspend():
                code = subprocess.call([*command, str(path)])
        except FileNotFoundError:
            app.notify(t("editor.not_found", editor=repr(command[0])), severity="error")
            return None
        except Exception as exc:  # SuspendNotSupported (e.g. the browser), OSError
            app.notify(t("editor.cannot_open", error=exc), severity="warning")
            return None
        if code != 0:
            app.notify(t("editor.failed", code=code), severity="warning")
            return None
        return path.read_text(encoding="utf-8", errors="replace")
    finally:
        path.unlink(missing_ok=True)
