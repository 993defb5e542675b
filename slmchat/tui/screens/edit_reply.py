"""Edit a reply into the answer you wanted (kept as the preferred version for training)."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, TextArea

from slmchat.i18n import localize_bindings, t


class EditReply(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save", priority=True, id="edit_reply.save"),
        Binding("escape", "cancel", "Cancel", id="edit_reply.cancel"),
    ]

    def __init__(self, text: str) -> None:
        super().__init__(classes="dialog-screen")
        localize_bindings(self)
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog edit-reply"):
            yield Label(t("edit_reply.title"), classes="dialog-title")
            yield Label(t("edit_reply.hint"), classes="dialog-hint")
            yield TextArea(self.text, id="edit-reply-text", soft_wrap=True)
            with Horizontal(classes="buttons"):
                yield Button(t("edit_reply.save"), id="save", variant="primary", compact=True)
                yield Button(t("dialog.cancel"), id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "save":
            self.action_save()
        else:
            self.dismiss(None)

    def action_save(self) -> None:
        text = self.query_one(TextArea).text
        self.dismiss(text if text.strip() else None)

    def action_cancel(self) -> None:
        self.dismiss(None)
