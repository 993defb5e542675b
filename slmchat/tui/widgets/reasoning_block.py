"""A reply's reasoning ("thinking"), folded to one line above the answer.

While it streams the line says "Thinking… N tokens"; afterwards "Thought for N tokens".
A click on the line, Alt+T (the latest reply) or ``t`` on a selected message unfolds it
(the prompt box takes F6 and F7: TextArea's select line / select all).
The text is only laid out while unfolded: a folded block costs one short line per
refresh however long the reasoning grows.
"""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import Static

from slmchat.i18n import t


class ReasoningBlock(Vertical):
    DEFAULT_CSS = """
    ReasoningBlock { height: auto; margin: 0 0 1 0; }
    ReasoningBlock > .reasoning-title { color: $text-muted; text-style: italic; }
    ReasoningBlock > .reasoning-title:hover { color: $text; }
    ReasoningBlock > .reasoning-text {
        display: none; color: $text-muted; padding: 0 1 0 2; border-left: vkey $primary 50%;
    }
    ReasoningBlock.-expanded > .reasoning-text { display: block; }
    """

    expanded: reactive[bool] = reactive(False, init=False)

    def __init__(self, text: str = "", tokens: int = 0, streaming: bool = False) -> None:
        super().__init__(classes="reasoning")
        self.text = text
        self.tokens = tokens
        self.streaming = streaming
        self._shown = ""  # the text the body holds (it is filled only while unfolded)

    def compose(self) -> ComposeResult:
        yield Static(self.title(), classes="reasoning-title")
        yield Static("", classes="reasoning-text")

    def title(self) -> Text:
        mark = "▼" if self.expanded else "▶"
        key = "reasoning.streaming" if self.streaming else "reasoning.done"
        return Text(f"{mark} {t(key, n=self.tokens)}")

    def append(self, text: str, tokens: int) -> None:
        """More reasoning (the reply view calls this on its flush timer)."""
        self.text += text
        self.tokens = max(self.tokens, tokens)
        self._redraw()

    def finish(self, tokens: int | None = None) -> None:
        self.streaming = False
        if tokens:
            self.tokens = tokens
        self._redraw()

    def toggle(self) -> None:
        self.expanded = not self.expanded

    def watch_expanded(self, expanded: bool) -> None:
        self.set_class(expanded, "-expanded")
        self._redraw()

    def _redraw(self) -> None:
        if not self.is_mounted:
            return
        self.query_one(".reasoning-title", Static).update(self.title())
        if self.expanded and self._shown != self.text:
            self._shown = self.text
            self.query_one(".reasoning-text", Static).update(Text(self.text))

    def on_click(self, event: events.Click) -> None:
        event.stop()
        self.toggle()
