"""The dock at the right of the chat that holds one tool panel (models or fine-tune).

At most one panel is open; its key (Ctrl+O, Ctrl+T) moves the focus between it and the
prompt, ``alt+left`` / ``alt+right`` while it has focus make it wider or narrower (the
width is remembered by the app), Esc (the panel's own Close) closes it.
"""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input

from slmchat.i18n import localize_bindings, t

MIN_WIDTH = 40
DEFAULT_WIDTH = 64
CHAT_MIN_WIDTH = 44  # what the chat keeps when the panel grows
STEP = 4

TITLES = {"models": "panel.models", "finetune": "panel.finetune"}  # message ids


def clamp_width(width: int, screen_width: int) -> int:
    return max(MIN_WIDTH, min(width, max(MIN_WIDTH, screen_width - CHAT_MIN_WIDTH)))


class SidePanel(Vertical):
    DEFAULT_CSS = """
    SidePanel { width: 64; border: round $primary 60%; padding: 0; display: none; }
    SidePanel:focus-within { border: round $primary; }
    SidePanel > * { height: 1fr; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("alt+left", "resize(1)", "Wider", id="panel.wider"),
        Binding("alt+right", "resize(-1)", "Narrower", id="panel.narrower"),
    ]

    class Resized(Message):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.width = width

    def __init__(self, width: int = DEFAULT_WIDTH, *, id: str | None = None) -> None:
        super().__init__(id=id)
        localize_bindings(self)
        self.kind: str | None = None
        self.panel_width = width

    def on_mount(self) -> None:
        self.styles.width = self.panel_width
        self.border_subtitle = t("panel.resize_hint")

    @property
    def panel(self) -> Widget | None:
        return self.children[0] if self.children else None

    async def open(self, kind: str, panel: Widget) -> None:
        await self.remove_children()
        self.kind = kind
        self.border_title = t(TITLES[kind]) if kind in TITLES else kind
        self.fit(self.screen.size.width)
        self.display = True
        await self.mount(panel)

    def focus_panel(self) -> None:
        """The open panel's first field takes the focus."""
        first = next(iter(self.query(Input)), None)
        if first is not None:
            first.focus()

    def close(self) -> None:
        self.kind = None
        self.display = False
        self.remove_children()

    def fit(self, screen_width: int) -> None:
        """Keep the remembered width, within what the terminal leaves the chat."""
        self.styles.width = clamp_width(self.panel_width, screen_width)

    def action_resize(self, direction: int) -> None:
        self.panel_width = clamp_width(self.panel_width + direction * STEP,
                                       self.screen.size.width)
        self.styles.width = self.panel_width
        self.post_message(self.Resized(self.panel_width))
