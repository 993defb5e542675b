"""The fine-tune panel's file picker: a training file (.txt, .md, .jsonl) or a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DirectoryTree, Label

from slmchat.i18n import localize_bindings, t


class TextFileTree(DirectoryTree):
    SUFFIXES = (".txt", ".md", ".markdown", ".jsonl")

    def filter_paths(self, paths: Any) -> Any:
        return [p for p in paths if not p.name.startswith(".")
                and (p.is_dir() or p.suffix.lower() in self.SUFFIXES)]


class FilePickScreen(ModalScreen[str | None]):
    """Browse for a training file (or choose the highlighted folder)."""

    DEFAULT_CSS = """
    FilePickScreen { align: center middle; }
    FilePickScreen #pick-box { width: 70%; height: 70%; border: thick $primary;
                               background: $surface; }
    FilePickScreen #pick-row { height: auto; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="pick.close")]

    def __init__(self, start: Path | None = None) -> None:
        super().__init__()
        localize_bindings(self)
        self.start = start or Path.home()
        self.folder: Path | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="pick-box"):
            yield Label(t("pick.title"))
            yield TextFileTree(str(self.start), id="pick-tree")
            with Horizontal(id="pick-row"):
                yield Button(t("pick.use_folder"), id="pick-folder")
                yield Button(t("dialog.cancel"), id="pick-cancel")

    @on(DirectoryTree.FileSelected)
    def _file(self, event: DirectoryTree.FileSelected) -> None:
        self.dismiss(str(event.path))

    @on(DirectoryTree.DirectorySelected)
    def _dir(self, event: DirectoryTree.DirectorySelected) -> None:
        self.folder = event.path

    @on(Button.Pressed, "#pick-folder")
    def _use_folder(self) -> None:
        self.dismiss(str(self.folder) if self.folder else None)

    @on(Button.Pressed, "#pick-cancel")
    def action_close(self) -> None:
        self.dismiss(None)
