"""A one-line offer above the prompt with a few buttons: "fine-tune finished: Use model /
Compare", "this chat last used X: Switch back". It never takes the focus: the user goes
on typing and answers when they like (a click, or Shift+Tab from the prompt), or not at
all."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Button, Static

from slmchat.i18n import t


class OfferBar(Horizontal):
    DEFAULT_CSS = """
    OfferBar { height: auto; background: $primary 15%; padding: 0 1; display: none; }
    OfferBar #offer-text { width: 1fr; height: auto; }
    OfferBar Button { width: auto; min-width: 6; margin: 0 0 0 1; }
    """

    class Chosen(Message):
        """A button was pressed: ``action`` is its name, "dismiss" for Dismiss."""

        def __init__(self, kind: str, action: str, payload: Any) -> None:
            super().__init__()
            self.kind = kind
            self.action = action
            self.payload = payload

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.kind = ""
        self.payload: Any = None

    def compose(self) -> ComposeResult:
        yield Static("", id="offer-text")

    async def offer(self, kind: str, text: str, actions: list[tuple[str, str]],
                    payload: Any = None) -> None:
        """Show ``text`` with a button per (label, action) and a Dismiss button."""
        self.kind, self.payload = kind, payload
        self.query_one("#offer-text", Static).update(Text(text))
        await self.query(Button).remove()
        buttons = [Button(label, name=action, compact=True,
                          variant="primary" if i == 0 else "default")
                   for i, (label, action) in enumerate(actions)]
        buttons.append(Button(t("offer.dismiss"), name="dismiss", compact=True))
        await self.mount_all(buttons)
        self.display = True

    def hide(self, kind: str | None = None) -> None:
        """Hide the offer (only if it is of ``kind``, when given)."""
        if kind is None or kind == self.kind:
            self.display = False
            self.kind = ""

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        kind, payload = self.kind, self.payload
        self.hide()
        # The pressed button is gone with the bar: the screen puts the focus back where
        # typing goes (a Dismiss is an answer too).
        self.post_message(self.Chosen(kind, event.button.name or "dismiss", payload))
