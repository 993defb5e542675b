"""The sources a reply used, under the reply: one button per passage that opens it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.containers import HorizontalGroup
from textual.message import Message
from textual.widgets import Button, Label

from slmchat.engine.store.provenance import Provenance
from slmchat.i18n import t


def sources_of(provenance: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The passages recorded in a reply's provenance (``retrieval.sources``)."""
    sources = (Provenance.from_dict(provenance).retrieval or {}).get("sources")
    return [s for s in sources or [] if isinstance(s, dict) and s.get("path")]


def citation_label(n: int, source: dict[str, Any]) -> str:
    start, end = source.get("start_line"), source.get("end_line")
    lines = f"{start}" if start == end else f"{start}-{end}"
    page = t("citations.page", page=source["page"]) if source.get("page") else ""
    return f"[{n}] {Path(str(source['path'])).name}:{lines}{page}"


class Citations(HorizontalGroup):
    """``Sources: [1] gzip.txt:107-125 [2] ...``; pressing one posts ``Open``."""

    class Open(Message):
        def __init__(self, source: dict[str, Any]) -> None:
            super().__init__()
            self.source = source

    def __init__(self, sources: list[dict[str, Any]]) -> None:
        super().__init__(classes="citations")
        self.sources = sources

    def compose(self) -> ComposeResult:
        yield Label(t("citations.label"), classes="citations-label")
        for n, source in enumerate(self.sources, 1):
            yield Button(citation_label(n, source), compact=True, classes="citation",
                         name=str(n - 1))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.post_message(self.Open(self.sources[int(event.button.name or 0)]))


def citations_for(provenance: dict[str, Any] | None) -> Citations | None:
    sources = sources_of(provenance)
    return Citations(sources) if sources else None
