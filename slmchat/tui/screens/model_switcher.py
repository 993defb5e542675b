"""The quick model switcher (F12, or "Switch model" in the palette) and what a model
change does to the open conversation.

``ModelSwitcher`` lists local models (engine/model/discovery.py: read from the files,
no weights loaded) with fuzzy filtering, recently used ones first, each with its format,
size and the runtime it would run on; Enter dismisses with a ``ModelSpec``. A recent
entry brings back the options it was loaded with (dtype, quantization, adapter).

``ModelSwitchActions`` (a part of the chat screen): when the model changes while a
conversation is open, a divider "model changed to …" goes into the log and the store
(so it is there when the conversation is reopened), and the conversation remembers the
model it last used; reopening a conversation whose model differs from the one loaded
offers to switch back (never switches by itself).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

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
from slmchat.engine.model.spec import ModelSpec, same_model
from slmchat.engine.store.store import StoreWriteError
from slmchat.fmt import human_bytes
from slmchat.i18n import localize_bindings, t
from slmchat.tui.messages import ModelsFound
from slmchat.tui.screens.conversations import ConversationScreen
from slmchat.tui.ui_state import spec_dict, spec_from
from slmchat.tui.widgets.offer_bar import OfferBar

if TYPE_CHECKING:
    from slmchat.engine.model.spec import ModelInfo
    from slmchat.engine.store.store import ModelChange


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


class ModelDivider(Static):
    DEFAULT_CSS = """
    ModelDivider { height: auto; margin: 1 0 0 0; color: $text-muted; text-align: center;
                   text-style: italic; }
    """

    def __init__(self, label: str) -> None:
        # Text, not markup: a fine-tuned model's name has "[lora on …]" in it.
        text = t("switcher.divider", label=label)
        super().__init__(Text(f"── {text} ──"), classes="model-divider")
        self.label = label


class ModelSwitchActions(ConversationScreen):
    """Dividers where the model changed, and the conversation's own model."""

    model_spec: ModelSpec | None = None  # what the app loaded last (None: not known)

    def model_changed(self, spec: ModelSpec | None, old: ModelInfo | None,
                      new: ModelInfo | None) -> None:
        """The app loaded ``spec``: mark the change in the open conversation."""
        if spec is not None:
            self.model_spec = spec
        if new is None or old is None or (old.path, old.label, old.adapter) == (
                new.path, new.label, new.adapter):
            return
        offers = self.offers
        offers.hide("switch-back")
        if spec is not None and offers.kind == "finetune" \
                and getattr(offers.payload, "out", None) == spec.path:
            offers.hide()  # "Use model" was taken (from the panel or the switcher)
        if self.conv is None or spec is None:
            return
        if same_model(self.conv.model, spec_dict(spec)):
            return  # back to the model that wrote this conversation ("Switch back"): no change
        try:
            change = self.store.add_model_change(self.conv.id, new.label, spec_dict(spec))
        except StoreWriteError as exc:  # the model is loaded; only the divider is missing
            self.not_saved(exc, "chat.divider_not_saved")
            return
        self.conv = replace(self.conv, model=spec_dict(spec))
        self.call_later(self._mount_divider, change)

    async def _mount_divider(self, change: ModelChange) -> None:
        log = self.log_view
        await log.query_children(".empty-hint").remove()
        await log.mount(ModelDivider(change.label))
        log.scroll_end(animate=False)

    def remember_conversation_model(self) -> None:
        """A reply is about to be written: the conversation's model is the loaded one."""
        if self.conv is None or self.model_spec is None:
            return
        current = spec_dict(self.model_spec)
        if not same_model(self.conv.model, current):
            self.store.set_conversation_model(self.conv.id, current)
            self.conv = replace(self.conv, model=current)

    async def open_conversation(self, conv_id: int) -> None:
        await super().open_conversation(conv_id)
        if self.conv is None or self.conv.id != conv_id:
            return
        await self._place_dividers(self.store.model_changes(conv_id))
        self.offer_switch_back()

    async def _place_dividers(self, changes: list[ModelChange]) -> None:
        """Each divider after the last shown message written before the change."""
        log = self.log_view
        views = [v for v in log.views() if v.msg_id]
        last_at: dict[int, Any] = {}
        for change in changes:
            anchor = None
            for view in views:
                if change.after_id is not None and view.msg_id <= change.after_id:
                    anchor = view
            divider = ModelDivider(change.label)
            if anchor is None:
                if views:
                    await log.mount(divider, before=last_at.get(0, views[0]))
                else:
                    await log.mount(divider)
                continue
            await log.mount(divider, after=last_at.get(anchor.msg_id, anchor))
            last_at[anchor.msg_id] = divider

    def offer_switch_back(self) -> None:
        offers = self.offers
        offers.hide("switch-back")
        saved = self.conv.model if self.conv is not None else None
        if saved is None or self.model_spec is None:
            return
        if same_model(saved, spec_dict(self.model_spec)):
            return
        spec = spec_from(saved)
        if spec is None:
            return
        old = _spec_label(spec)
        new = _spec_label(self.model_spec)
        self.call_later(offers.offer, "switch-back", t("switcher.back", old=old, new=new),
                        [(t("switcher.back_action"), "switch")], spec)

    async def on_offer_bar_chosen(self, event: OfferBar.Chosen) -> None:
        if event.kind != "switch-back":
            return
        event.stop()
        load = getattr(self.app, "load_model", None)
        if load is not None and isinstance(event.payload, ModelSpec):
            load(event.payload)

    @property
    def offers(self) -> OfferBar:
        return self.query_one(OfferBar)


def _spec_label(spec: ModelSpec) -> str:
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
