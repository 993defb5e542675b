"""Per-conversation settings: system prompt and sampling, saved with the conversation."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Checkbox, Input, Label, Static, TextArea

from slmchat.config import Settings
from slmchat.engine.generation.sampling import SAMPLING_RANGES, SamplingParams
from slmchat.errors import SlmChatError
from slmchat.i18n import t

# (key, label, type, hint): labels and ranges from the engine's one definition (in
# English; the panel shows ``label_for``/``hint_for``, from the catalogue).
FIELDS: tuple[tuple[str, str, type, str], ...] = tuple(
    (r.name, r.label, r.kind, f"{r.hint}, {r.describe()}" if r.hint else r.describe())
    for r in SAMPLING_RANGES
)
KEYS = ("system_prompt", *(f[0] for f in FIELDS))
RANGE_TEXT = {r.name: r.describe() for r in SAMPLING_RANGES}


def label_for(key: str) -> str:
    """A sampling field's label in the UI language (``sampling.<key>``)."""
    return t(f"sampling.{key}")


def hint_for(key: str) -> str:
    """Its hint and valid range: "0 = greedy, [0, 5]"."""
    hint = t(f"sampling.{key}.hint")
    return f"{hint}, {RANGE_TEXT[key]}" if hint.strip() else RANGE_TEXT[key]


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

    class TintChanged(Message):
        """The "tint accepted drafts" box was ticked or cleared (an app-wide display
        setting: it applies at once, apart from Save)."""

        def __init__(self, on: bool) -> None:
            super().__init__()
            self.on = on

    def compose(self) -> ComposeResult:
        # One row per field and the focused field's hint on one line, so the whole form
        # and its buttons fit a 24-row terminal.
        yield Label(t("settings.system_prompt"), classes="field-label")
        yield TextArea(id="set-system_prompt", soft_wrap=True, tab_behavior="focus",
                       classes="system-prompt", compact=True)
        for key, _label, _type, _hint in FIELDS:
            with Horizontal(classes="field-row"):
                yield Label(label_for(key), classes="field-name")
                yield Input(id=f"set-{key}", classes="field-input", compact=True,
                            tooltip=hint_for(key))
        yield Checkbox(t("settings.tint_drafts"), id="set-tint", compact=True)
        yield Static("", id="settings-hint")
        with Horizontal(classes="buttons"):
            yield Button(t("settings.save"), id="settings-save", variant="primary", compact=True)
            yield Button(t("settings.save_default"), id="settings-default", compact=True)

    def on_mount(self) -> None:
        self.border_title = t("settings.title")

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        hints = {f"set-{key}": f"{label_for(key)}: {hint_for(key)}" for key, *_ in FIELDS}
        hints["set-system_prompt"] = t("settings.system_prompt_hint")
        hints["set-tint"] = t("settings.tint_drafts_hint")
        text = hints.get(event.widget.id or "", "")
        self.query_one("#settings-hint", Static).update(Text(text, style="dim"))

    def load_values(self, values: dict[str, Any]) -> None:
        self.query_one("#set-system_prompt", TextArea).load_text(values.get("system_prompt") or "")
        for key, _label, _type, _hint in FIELDS:
            value = values.get(key)
            self.query_one(f"#set-{key}", Input).value = "" if value is None else str(value)

    def set_tint(self, on: bool) -> None:
        """Show the tinting setting's value (no TintChanged)."""
        box = self.query_one("#set-tint", Checkbox)
        with box.prevent(Checkbox.Changed):
            box.value = on

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        self.post_message(self.TintChanged(event.value))

    def open_with(self, values: dict[str, Any]) -> None:
        """Show the panel with ``values``, the system prompt focused."""
        self.display = True
        self.load_values(values)
        self.query_one("#set-system_prompt", TextArea).focus()

    def read_values(self) -> dict[str, Any]:
        """Parse and validate the form; raises SlmChatError with a one-line reason."""
        values: dict[str, Any] = {
            "system_prompt": self.query_one("#set-system_prompt", TextArea).text,
        }
        for key, _label, typ, _hint in FIELDS:
            label = label_for(key)
            raw = self.query_one(f"#set-{key}", Input).value.strip()
            if not raw:
                if key == "seed":
                    values[key] = None
                    continue
                raise SlmChatError(t("settings.empty", label=label))
            try:
                values[key] = typ(raw)
            except ValueError:
                raise SlmChatError(t("settings.not_number", label=label, raw=repr(raw))) from None
        params_from(values)  # range checks
        return values

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        try:
            values = self.read_values()
        except SlmChatError as exc:
            self.notify(str(exc), title=t("settings.not_saved"), severity="error")
            return
        self.post_message(self.Saved(values, as_default=event.button.id == "settings-default"))
