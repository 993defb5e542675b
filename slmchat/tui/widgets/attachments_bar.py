"""One line above the prompt: the files attached to this chat and indexing progress."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.widgets import Static

from slmchat.i18n import t


class AttachmentsBar(Static):
    """Hidden while nothing is attached."""

    def __init__(self) -> None:
        super().__init__("", id="attachments")
        self.paths: list[str] = []
        self.progress = ""
        self.summary = ""

    def on_mount(self) -> None:
        self.display = False

    def show(self, paths: list[str], progress: str | None = None,
             summary: str | None = None) -> None:
        self.paths = list(paths)
        if progress is not None:
            self.progress = progress
        if summary is not None:
            self.summary = summary
        self.display = bool(self.paths)
        text = Text(t("files.label"), style="bold")
        text.append(", ".join(Path(p).name or p for p in self.paths))
        note = self.progress or self.summary
        if note:
            text.append(f"  {note}", style="italic")
        text.append(t("files.detach_hint"), style="dim")
        self.update(text)
