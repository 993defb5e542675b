"""Renaming, deleting and exporting a conversation: the dialogs and what follows them.

The chat screen decides which conversation (highlighted in the sidebar, else the open
one) and what changes on screen afterwards (``done``); a failed write is reported
through ``failed`` (the screen's "not saved" notice).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from slmchat.engine.fsutil import write_private
from slmchat.engine.store.store import Store, StoreWriteError
from slmchat.engine.store.transcript import to_json, to_markdown
from slmchat.i18n import t
from slmchat.tui.screens.dialogs import Confirm, TextPrompt

Failed = Callable[[StoreWriteError, str], None]  # the error, the message id of what failed


def _slug(title: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-").lower()
    return slug[:40] or "conversation"


def default_export_path(title: str, conv_id: int, fmt: str = "md") -> Path:
    return Path.cwd() / f"slmchat-{conv_id}-{_slug(title)}.{fmt}"


def export_conversation(store: Store, conv_id: int, path: Path) -> None:
    """Write the conversation to ``path``: JSON for a .json name, else Markdown (raises
    OSError)."""
    as_json = path.suffix.lower() == ".json"
    text = to_json(store, conv_id) if as_json else to_markdown(store, conv_id)
    write_private(path, text)


def rename(app: Any, store: Store, conv_id: int, title: str, done: Callable[[], None],
           failed: Failed) -> None:
    """Ask for a new title and rename the conversation; ``done`` after it is saved."""

    def answered(new_title: str | None) -> None:
        if not new_title:
            return
        try:
            store.rename_conversation(conv_id, new_title)
        except StoreWriteError as exc:
            failed(exc, "chat.change_not_saved")
            return
        done()

    app.push_screen(TextPrompt(t("conv.rename"), title), answered)


def delete(app: Any, store: Store, conv_id: int, title: str,
           done: Callable[[], Awaitable[None]], failed: Failed) -> None:
    """Ask, then delete the conversation; ``done`` after it is gone."""

    async def answered(yes: bool | None) -> None:
        if not yes:
            return
        try:
            store.delete_conversation(conv_id)
        except StoreWriteError as exc:  # nothing was deleted
            failed(exc, "chat.change_not_saved")
            return
        await done()
        app.notify(t("conv.deleted", title=title))

    app.push_screen(Confirm(t("conv.delete_confirm", title=title)), answered)


def export(app: Any, store: Store, conv_id: int, title: str, fmt: str = "md") -> None:
    """Ask where (a name ending .json: JSON, else Markdown) and write the conversation."""

    def answered(path_text: str | None) -> None:
        if not path_text:
            return
        path = Path(path_text).expanduser()
        try:
            export_conversation(store, conv_id, path)
        except OSError as exc:
            app.notify(t("conv.export_failed", error=exc), severity="error")
            return
        app.notify(t("conv.exported", path=path), title=t("conv.export_title"))

    app.push_screen(TextPrompt(t("conv.export_to"), str(default_export_path(title, conv_id, fmt)),
                               hint=t("conv.export_hint")), answered)
