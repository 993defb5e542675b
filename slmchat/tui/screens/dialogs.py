"""Small modal dialogs: ask for a line of text, confirm a destructive action, allow a
tool call."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from slmchat.i18n import localize_bindings, t


class TextPrompt(ModalScreen[str | None]):
    """Ask for one line of text. Dismisses with the text, or None on Esc / Cancel."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="dialog.cancel"),
    ]

    def __init__(self, title: str, value: str = "", hint: str = "") -> None:
        super().__init__(classes="dialog-screen")
        localize_bindings(self)
        self.title_text = title
        self.value = value
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            if self.hint:
                yield Label(self.hint, classes="dialog-hint")
            yield Input(self.value, id="dialog-input")
            with Horizontal(classes="buttons"):
                yield Button(t("dialog.ok"), id="ok", variant="primary", compact=True)
                yield Button(t("dialog.cancel"), id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ok":
            self.dismiss(self.query_one(Input).value.strip() or None)
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class Confirm(ModalScreen[bool]):
    """Yes / no question; Esc answers no."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "no", "Cancel", id="confirm.no"),
        Binding("y", "yes", "Yes", id="confirm.yes"),
    ]

    def __init__(self, question: str, yes_label: str | None = None) -> None:
        super().__init__(classes="dialog-screen")
        localize_bindings(self)
        self.question = question
        self.yes_label = yes_label or t("dialog.delete")

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="dialog-title")
            with Horizontal(classes="buttons"):
                yield Button(self.yes_label, id="yes", variant="error", compact=True)
                yield Button(t("dialog.cancel"), id="no", compact=True)

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)


class ToolConsent(ModalScreen[str]):
    """The model called a tool: run it? Dismisses with "once", "always" (this tool, until
    the app quits) or "deny"; Esc denies, and Deny has the focus, so a stray Enter runs
    nothing."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "deny", "Deny", id="tool.deny"),
    ]
    DEFAULT_CSS = """
    ToolConsent #tool-args-scroll { height: auto; max-height: 12; margin: 0 0 1 0; }
    """

    def __init__(self, call: dict[str, Any]) -> None:
        super().__init__(classes="dialog-screen")
        localize_bindings(self)
        self.call = call

    def compose(self) -> ComposeResult:
        name, server = str(self.call.get("name")), str(self.call.get("server") or "?")
        args = json.dumps(self.call.get("arguments") or {}, indent=2, ensure_ascii=False)
        with Vertical(classes="dialog"):
            yield Label(Text(t("tool.consent_title", name=name, server=server)),
                        classes="dialog-title")
            with VerticalScroll(id="tool-args-scroll"):
                yield Static(Text(args), id="tool-args")
            with Horizontal(classes="buttons"):
                yield Button(t("tool.allow_once"), id="once", variant="primary", compact=True)
                yield Button(Text(t("tool.allow_always", name=name)), id="always", compact=True)
                yield Button(t("tool.deny_button"), id="deny", variant="error", compact=True)

    def on_mount(self) -> None:
        self.query_one("#deny", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(str(event.button.id))

    def action_deny(self) -> None:
        self.dismiss("deny")
