"""Per-conversation settings: system prompt and sampling, saved with the conversation."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Input, Label, Static, TextArea

from slmchat.config import Settings
from slmchat.engine.generation.sampling import SAMPLING_RANGES, SamplingParams
from slmchat.errors import SlmChatError

# (key, label, type, hint): labels and ranges from the engine's one definition.
FIELDS: tuple[tuple[str, str, type, str], ...] = tuple(
    (r.name, r.label, r.kind, f"{r.hint}, {r.describe()}" if r.hint else r.describe())
    for r in SAMPLING_RANGES
)
KEYS = ("system_prompt", *(f[0] for f in FIELDS))


def defaults_from(settings: Settings) -> dict[str, Any]:
    """New conversations start from the [generation] section of the settings file."""
    g = settings.generation.model_dump()
    return {k: g.get(k) for k in KEYS}


def params_from(values: dict[str, Any]) -> SamplingParams:
    """SamplingParams from a settings dict (missing keys take the engine defaults)."""
    known = {k: values[k] for k in KEYS if k != "system_prompt" and k in values}
    return SamplingParams(**known).validate()


class SettingsPanel(VerticalScroll):
    """Edits a settings dict; posts ``Saved`` with validated values."""

    class Saved(Message):
        def __init__(self, values: dict[str, Any], as_default: bool) -> None:
            super().__init__()
            self.values = values
            self.as_default = as_default

    def compose(self) -> ComposeResult:
        # One row per field and the focused field's hint on one line, so the whole form
        # and its buttons fit a 24-row terminal.
        yield Label("System prompt", classes="field-label")
        yield TextArea(id="set-system_prompt", soft_wrap=True, tab_behavior="focus",
                       classes="system-prompt", compact=True)
        for key, label, _type, hint in FIELDS:
            with Horizontal(classes="field-row"):
                yield Label(label, classes="field-name")
                yield Input(id=f"set-{key}", classes="field-input", compact=True,
                            tooltip=hint)
        yield Static("", id="settings-hint")
        with Horizontal(classes="buttons"):
            yield Button("Save", id="settings-save", variant="primary", compact=True)
            yield Button("Save as default", id="settings-default", compact=True)

    def on_mount(self) -> None:
        self.border_title = "Chat settings"

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        hints = {f"set-{key}": f"{label}: {hint}" for key, label, _t, hint in FIELDS}
        hints["set-system_prompt"] = "Sent before the chat; empty = none"
        text = hints.get(event.widget.id or "", "")
        self.query_one("#settings-hint", Static).update(Text(text, style="dim"))

    def load_values(self, values: dict[str, Any]) -> None:
        self.query_one("#set-system_prompt", TextArea).load_text(values.get("system_prompt") or "")
        for key, _label, _type, _hint in FIELDS:
            value = values.get(key)
            self.query_one(f"#set-{key}", Input).value = "" if value is None else str(value)

    def read_values(self) -> dict[str, Any]:
        """Parse and validate the form; raises SlmChatError with a one-line reason."""
        values: dict[str, Any] = {
            "system_prompt": self.query_one("#set-system_prompt", TextArea).text,
        }
        for key, label, typ, _hint in FIELDS:
            raw = self.query_one(f"#set-{key}", Input).value.strip()
            if not raw:
                if key == "seed":
                    values[key] = None
                    continue
                raise SlmChatError(f"{label} is empty")
            try:
                values[key] = typ(raw)
            except ValueError:
                raise SlmChatError(f"{label}: {raw!r} is not a number") from None
        params_from(values)  # range checks
        return values

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        try:
            values = self.read_values()
        except SlmChatError as exc:
            self.notify(str(exc), title="Settings not saved", severity="error")
            return
        self.post_message(self.Saved(values, as_default=event.button.id == "settings-default"))
