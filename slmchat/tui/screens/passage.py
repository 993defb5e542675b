"""A cited passage, opened from a reply's sources: the file's lines, the range marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from slmchat.i18n import localize_bindings, t

CONTEXT_LINES = 3
MAX_LINES = 400


def passage_text(source: dict[str, Any], chunk_text: str | None = None) -> Text:
    """The cited lines with a few around them; the cited ones highlighted. PDFs (whose
    "lines" are those of the extracted text) show the indexed passage instead."""
    path = Path(str(source.get("path", "")))
    start, end = int(source.get("start_line") or 1), int(source.get("end_line") or 1)
    if path.suffix.lower() == ".pdf":
        return Text(chunk_text or t("passage.missing"))
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        return Text(t("passage.cannot_open", path=path, error=exc.strerror or exc), style="red")
    first = max(1, start - CONTEXT_LINES)
    last = min(len(lines), end + CONTEXT_LINES, first + MAX_LINES)
    out = Text()
    width = len(str(last))
    for n in range(first, last + 1):
        cited = start <= n <= end
        out.append(f"{n:>{width}} ", style="bold" if cited else "dim")
        out.append(lines[n - 1] + "\n", style="reverse" if cited else "")
    return out


class PassageScreen(ModalScreen[None]):
    """Esc (or q) closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Close", id="passage.close"),
    ]

    def __init__(self, source: dict[str, Any], chunk_text: str | None = None) -> None:
        super().__init__(classes="dialog-screen")
        localize_bindings(self)
        self.source = source
        self.chunk_text = chunk_text

    def compose(self) -> ComposeResult:
        s = self.source
        where = f"{s.get('path')}:{s.get('start_line')}-{s.get('end_line')}"
        if s.get("page"):
            where += t("passage.page", page=s["page"])
        with Vertical(classes="dialog passage"):
            yield Label(where, classes="dialog-title", id="passage-title")
            with VerticalScroll(id="passage-scroll"):
                yield Static(passage_text(s, self.chunk_text), id="passage-text")
            yield Label(t("passage.hint"), classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)
