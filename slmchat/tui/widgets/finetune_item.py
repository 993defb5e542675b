"""The status-bar item of a running fine-tune: "⟳ fine-tune 12/40 · ETA 2m 10s".

Shown beside the status line while a run folder says "running" and the fine-tune panel
is not docked; a click opens the panel (so does Ctrl+T)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import events
from textual.message import Message
from textual.widgets import Static

from slmchat.fmt import format_duration
from slmchat.i18n import t


def item_text(step: int, total: int, eta_s: float | None) -> str:
    total_text = f"/{total}" if total else ""
    eta = t("ftitem.eta", eta=format_duration(eta_s)) if eta_s is not None else ""
    return t("ftitem.text", step=step, total=total_text, eta=eta)


class FinetuneItem(Static):
    DEFAULT_CSS = """
    FinetuneItem { width: auto; height: 1; background: $warning 30%; color: $text;
                   display: none; }
    FinetuneItem:hover { background: $warning 50%; }
    """

    class Clicked(Message):
        """Open the fine-tune panel."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.tooltip = t("ftitem.hint")
        self.run: Any = None  # the RunSummary shown

    def show_run(self, step: int, total: int, eta_s: float | None) -> None:
        self.update(Text(item_text(step, total, eta_s)))
        self.display = True

    def hide(self) -> None:
        self.display = False

    def on_click(self, event: events.Click) -> None:
        event.stop()
        self.post_message(self.Clicked())
