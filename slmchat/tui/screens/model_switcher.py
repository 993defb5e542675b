"""The quick model switcher (F12, or "Switch model" in the palette) and what a model
change does to the open conversation.

``ModelSwitcher`` lists local models (engine/model/discovery.py: read from the files,
no weights loaded) with fuzzy filtering, recently used ones first, each with its format,
size and the runtime it would run on; Enter dismisses with a ``ModelSpec``. A recent
entry brings back the options it was loaded with (dtype, quantization, adapter).

The chat screen, when the model changes while a conversation is open, puts a divider
"model changed to …" into the log (``ChatLog.add_divider``) and the store (so it is there
when the conversation is reopened), and the conversation remembers the model it last
used (``same_model`` decides whether it changed); reopening a conversation whose model
differs from the one loaded offers to switch back (``spec_label`` names both; it never
switches by itself).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.fuzzy import Matcher
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from slmchat.engine.model.discovery import ModelEntry
from slmchat.engine.model.spec import ModelSpec
from slmchat.fmt import human_bytes
from slmchat.i18n import localize_bindings, t
from slmchat.tui.messages import ModelsFound
from slmchat.tui.ui_state import spec_from


def runtime_hint(entry: ModelEntry, spec: ModelSpec | None = None,
                 base: ModelEntry | None = None) -> str:
    """The runtime a chat load would use, from the files alone (no weights read);
    ``base``: a LoRA adapter's base model (its architecture decides)."""
    from slmchat.engine import runtimes

    plain = base.plain_llama if entry.format == "lora" and base is not None \
        else entry.plain_llama
    return runtimes.hint(entry.format, plain, spec)


def ranked(entries: Iterable[ModelEntry], query: str, recent: list[str]
           ) -> list[ModelEntry]:
    """Entries matching ``query`` (fuzzy), best first; recent ones first among equals
    and, with no query, in the order last used."""
    order = {path: i for i, path in enumerate(recent)}
    rank = lambda e: order.get(e.path, len(order))  # noqa: E731
    entries = list(entries)
    if not query.strip():
        return sorted(entries, key=rank)
    matcher = Matcher(query)
    scored = [(matcher.match(f"{e.label} {e.format} {e.path}"), e) for e in entries]
    return [e for s, e in sorted((p for p in scored if p[0] > 0),
                                 key=lambda p: (-p[0], rank(p[1])))]


class ModelSwitcher(ModalScreen[ModelSpec | None]):
    DEFAULT_CSS = """
    ModelSwitcher { align: center top; }
    ModelSwitcher #switcher { width: 80%; max-width: 100; height: auto; max-height: 80%;
                              margin: 2 0 0 0; border: round $accent; background: $surface;
                              padding: 0 1; }
    ModelSwitcher #switcher-filter { margin: 0 0 1 0; }
    ModelSwitcher #switcher-list { height: auto; max-height: 20; }
    ModelSwitcher #switcher-hint { color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="switcher.cancel"),
        Binding("down", "move(1)", "Next", show=False, id="switcher.next"),
        Binding("up", "move(-1)", "Previous", show=False, id="switcher.previous"),
    ]

    def __init__(self, discover_fn: Callable[[], list[ModelEntry]],
                 recent: list[dict[str, Any]] | None = None,
                 current: ModelSpec | None = None) -> None:
        super().__init__()
        localize_bindings(self)
        self.discover_fn = discover_fn
        self.recent = [r for r in (recent or []) if isinstance(r, dict) and r.get("path")]
        self.current = current
        self.entries: list[ModelEntry] = []
        self.shown: list[ModelEntry] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="switcher"):
            yield Input(placeholder=t("switcher.placeholder"), id="switcher-filter", compact=True)
            yield OptionList(Option(t("switcher.scanning"), disabled=True), id="switcher-list",
                             compact=True)
            yield Static(t("switcher.hint"), id="switcher-hint")

    def on_mount(self) -> None:
        self.query_one("#switcher", Vertical).border_title = t("switcher.title")
        self.query_one("#switcher-filter", Input).focus()
        self._scan()

    @work(thread=True, exclusive=True, group="switcher-scan")
    def _scan(self) -> None:
        try:
            entries = list(self.discover_fn())
        except Exception:  # a broken folder must not break the switcher
            entries = []
        self.post_message(ModelsFound(entries))

    def on_models_found(self, message: ModelsFound) -> None:
        message.stop()
        self.entries = [e for e in message.entries if not e.problem]
        self._fill(self.query_one("#switcher-filter", Input).value)

    @on(Input.Changed, "#switcher-filter")
    def _filter(self, event: Input.Changed) -> None:
        self._fill(event.value)

    def _recent_spec(self, entry: ModelEntry) -> ModelSpec | None:
        for r in self.recent:
            if r.get("path") == entry.path:
                return spec_from(r)
        return None

    def spec_for(self, entry: ModelEntry) -> ModelSpec:
        return self._recent_spec(entry) or ModelSpec(path=entry.path)

    def _base(self, entry: ModelEntry) -> ModelEntry | None:
        if entry.format != "lora" or not entry.base:
            return None
        default = next((e for e in self.entries if e.source == "default"), None)
        return next((e for e in self.entries if e.path == entry.base), default)

    def _row(self, entry: ModelEntry) -> Text:
        spec = self._recent_spec(entry)
        marks = []
        if self.current is not None and entry.path == self.current.path:
            marks.append(t("switcher.loaded"))
        elif spec is not None:
            marks.append(t("switcher.recent"))
        options = ""
        if spec is not None and (spec.quant != "none" or spec.adapter):
            options = f" {spec.quant if spec.quant != 'none' else ''}" + (
                t("switcher.adapter") if spec.adapter else "")
        line = Text(entry.label, style="bold")
        # a remote model: where it runs, not a size on this disk
        where = entry.extra.get("host") or human_bytes(entry.size_bytes)
        line.append(f"  {entry.format}{options} · {where} · "
                    f"{runtime_hint(entry, spec, self._base(entry))}", style="dim")
        if marks:
            line.append(f"  [{', '.join(marks)}]", style="italic")
        return line

    def _fill(self, query: str) -> None:
        box = self.query_one("#switcher-list", OptionList)
        recent_paths = [str(r["path"]) for r in self.recent]
        self.shown = ranked(self.entries, query, recent_paths)
        box.clear_options()
        if not self.shown:
            box.add_option(Option(t("switcher.no_match"), disabled=True))
            return
        box.add_options([Option(self._row(e), id=str(i)) for i, e in enumerate(self.shown)])
        first = 0
        if not query.strip() and self.current is not None and len(self.shown) > 1 \
                and self.shown[0].path == self.current.path:
            first = 1  # with no filter, Enter goes back to the previous model
        box.highlighted = first

    def action_move(self, step: int) -> None:
        box = self.query_one("#switcher-list", OptionList)
        if self.shown:
            box.highlighted = max(0, min(len(self.shown) - 1, (box.highlighted or 0) + step))

    @on(Input.Submitted, "#switcher-filter")
    def _submit(self) -> None:
        box = self.query_one("#switcher-list", OptionList)
        if self.shown and box.highlighted is not None:
            self.dismiss(self.spec_for(self.shown[box.highlighted]))

    @on(OptionList.OptionSelected, "#switcher-list")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            self.dismiss(self.spec_for(self.shown[int(event.option.id)]))

    def action_cancel(self) -> None:
        self.dismiss(None)


def spec_label(spec: ModelSpec) -> str:
    """A spec as the switch-back offer names it: "qwen-0.5b (cpu-int8)"."""
    from pathlib import Path

    from slmchat.engine.model.default import MODEL_NAME
    from slmchat.engine.model.naming import finetuned_name

    # A run's output folder is called "model": name it after its run and base instead.
    name = MODEL_NAME if spec.path in ("default", "") else (
        finetuned_name(Path(spec.path)) or Path(spec.path).name or spec.path)
    extra = [x for x in (spec.quant if spec.quant != "none" else "",
                         spec.runtime if spec.runtime != "auto" else "",
                         f"+{Path(spec.adapter).name}" if spec.adapter else "") if x]
    return f"{name} ({', '.join(extra)})" if extra else name
