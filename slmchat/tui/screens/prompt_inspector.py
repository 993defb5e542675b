"""The prompt inspector: exactly what the model is fed for the next reply, or was fed for
a past one.

Shows the text after the chat template with its special tokens marked (or token by
token), the tokens each message costs, the turns the context budget dropped, the stop
strings, the sampling settings and how many prompt tokens the KV cache of the previous
turn already held. The prompt is built by ``Engine.preview_prompt(detail=True)`` in a
thread worker; a past reply is rebuilt from the messages before it with the sampling
recorded in its provenance, next to the counts measured when it was written.

The chat screen opens it (F8 for the next reply, ``i`` on a selected message in the
log, the palette entries) with a target from ``next_reply_target`` or ``past_target``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar

from rich.cells import cell_len, set_cell_size
from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Static

from slmchat.engine.generation.prompting import ChatMessage, Prompt
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.store.provenance import Provenance
from slmchat.errors import first_line
from slmchat.i18n import has, localize_bindings, t
from slmchat.tui.generation import chat_messages, model_label, same_weights
from slmchat.tui.messages import PromptBuilt
from slmchat.tui.widgets.footer import FittedFooter
from slmchat.tui.widgets.settings_panel import params_from

if TYPE_CHECKING:
    from slmchat.engine.model.spec import ModelInfo
    from slmchat.engine.session import EngineLike
    from slmchat.engine.store.store import StoredMessage
    from slmchat.tui.widgets.message_view import MessageView

SPECIAL_STYLE = "bold reverse magenta"
TOKEN_STYLES = ("on #2b3a55", "on #3d2b55")  # alternate so token edges show
NEWLINE = "↵"
SHORT_ROWS = 30  # below this the top part scrolls so that the prompt text stays in view


@dataclass(frozen=True)
class InspectTarget:
    """Which prompt to show: the messages a reply is (or was) given, and its settings."""

    title: str  # already in the UI language (t("insp.target.*"))
    messages: list[ChatMessage]
    params: SamplingParams
    continue_last: bool = False
    recorded: Provenance | None = None  # a past reply's provenance
    notes: tuple[str, ...] = ()
    thinking: bool | None = None  # a thinking model's switch, as the reply had it


def params_from_provenance(prov: Provenance | dict[str, Any],
                           fallback: SamplingParams) -> SamplingParams:
    """The sampling a past reply was written with (fields it did not record: fallback)."""
    if not isinstance(prov, Provenance):
        prov = Provenance.from_dict(prov)
    known = {f.name for f in fields(SamplingParams)}
    recorded = {k: v for k, v in (prov.sampling or {}).items() if k in known}
    merged = {**asdict(fallback), **recorded}
    merged["stop"] = tuple(merged.get("stop") or ())
    return SamplingParams(**merged)


def marked_text(text: str, specials: tuple[str, ...]) -> Text:
    """The prompt text with special tokens highlighted and line ends shown as ↵."""
    out = Text(text.replace("\n", f"{NEWLINE}\n"))
    out.highlight_words(list(specials), style=SPECIAL_STYLE)
    out.highlight_words([NEWLINE], style="dim")
    return out


def token_text(pieces: tuple[str, ...], specials: tuple[str, ...]) -> Text:
    """One coloured cell per token, so token boundaries (and odd splits) are visible."""
    out = Text()
    special = set(specials)
    for i, piece in enumerate(pieces):
        shown = piece.replace("\n", f"{NEWLINE}\n")
        style = SPECIAL_STYLE if piece in special else TOKEN_STYLES[i % 2]
        out.append(shown, style=style)
    return out


def _stop_list(prompt: Prompt, params: SamplingParams) -> str:
    stops = [repr(s) for s in (*params.stop, *prompt.stop)]
    eos = t("insp.eos") + ("" if not params.ignore_eos else t("insp.eos_ignored"))
    return ", ".join([eos, *stops])


def _sampling(params: SamplingParams) -> str:
    return ", ".join(f"{k}={v}" for k, v in asdict(params).items() if k != "stop")


def summary(target: InspectTarget, prompt: Prompt, info: ModelInfo | None) -> Text:
    """The facts above the text: model, size and budget, KV reuse, dropped turns, stops,
    sampling, and for a past reply what was measured when it was written."""
    budget = prompt.context_length - target.params.max_new_tokens
    fmt = f"insp.format.{prompt.format}"

    def label(name: str) -> tuple[str, str]:
        return t(f"insp.label.{name}"), "bold"

    rec = target.recorded
    written_by = rec.model if rec is not None else None
    # A past reply: the model that wrote it (its provenance), not the one loaded now.
    lines: list[Text | str] = [
        Text.assemble(label("model"), model_label(written_by) if written_by
                      else info.label if info else t("insp.no_model")),
        Text.assemble(label("format"), t(fmt) if has(fmt) else prompt.format),
        Text.assemble(label("prompt"), t(
            "insp.prompt_size", tokens=prompt.prompt_tokens, budget=budget,
            context=prompt.context_length, new=target.params.max_new_tokens)),
        Text.assemble(
            label("kv"),
            t("insp.kv_reused", cached=prompt.cached_tokens, tokens=prompt.prompt_tokens,
              prefill=prompt.prompt_tokens - prompt.cached_tokens)
            if target.recorded is None else t("insp.kv_later")),
    ]
    if prompt.dropped_messages or prompt.truncated:
        parts = []
        if prompt.dropped_messages:
            parts.append(t("insp.dropped_messages", n=prompt.dropped_messages))
        if prompt.truncated:
            parts.append(t("insp.truncated"))
        lines.append(Text.assemble(label("dropped"), ("; ".join(parts), "yellow")))
    else:
        lines.append(Text.assemble(label("dropped"), t("insp.fits")))
    lines.append(Text.assemble(label("stops"), _stop_list(prompt, target.params)))
    lines.append(Text.assemble(label("sampling"), _sampling(target.params)))
    if rec is not None:
        model = rec.model
        then = t("insp.written", prompt="?" if rec.prompt_tokens is None else rec.prompt_tokens,
                 cached=rec.cached_tokens or 0,
                 new="?" if rec.new_tokens is None else rec.new_tokens,
                 model=model.name if model is not None else "?")
        lines.append(Text.assemble(label("written"), then))
        if info is not None and model is not None and not same_weights(model, info):
            lines.append(Text.assemble(label("rebuilt_with"), info.label))
            lines.append(Text(t("insp.other_model"), style="yellow"))
    for note in target.notes:
        lines.append(Text(note, style="italic"))
    return Text("\n").join(Text(x) if isinstance(x, str) else x for x in lines)


def message_rows(target: InspectTarget, prompt: Prompt) -> list[tuple[str, ...]]:
    """(#, role, tokens, state, first line) per message, dropped ones included."""
    turns = [m for m in target.messages if m.role != "system"]
    dropped = turns[: prompt.dropped_messages]
    rows: list[tuple[str, ...]] = []

    def first(text: str) -> str:
        line = next((ln for ln in text.splitlines() if ln.strip()), "")
        # by terminal cells, not characters: a Japanese line is twice as wide
        return line if cell_len(line) <= 70 else set_cell_size(line, 69) + "…"

    for m in dropped:
        rows.append((str(len(rows) + 1), m.role, "—", t("insp.row.dropped"), first(m.content)))
    counts = prompt.message_tokens or (None,) * len(prompt.kept)
    for m, n in zip(prompt.kept, counts, strict=False):
        cut = prompt.truncated and m is prompt.kept[-1]
        state = t("insp.row.cut") if cut else t("insp.row.kept")
        rows.append((str(len(rows) + 1), m.role, "?" if n is None else str(n), state,
                     first(m.content)))
    if prompt.generation_prompt_tokens:
        rows.append(("", t("insp.row.reply_starts"), str(prompt.generation_prompt_tokens),
                     "", ""))
    return rows


class PromptInspector(Screen[None]):
    """Full-screen view of one prompt. Esc closes, t switches text/tokens, c copies."""

    DEFAULT_CSS = """
    PromptInspector { layout: vertical; }
    PromptInspector #insp-title { height: 1; padding: 0 1; background: $primary 30%;
        text-style: bold; }
    PromptInspector #insp-top { height: auto; }
    PromptInspector #insp-summary { height: auto; padding: 0 1; }
    PromptInspector #insp-messages { height: auto; max-height: 12; margin: 1 0 0 0; }
    PromptInspector #insp-scroll { height: 1fr; min-height: 5; border: round $primary 50%; }
    PromptInspector.-short #insp-top { max-height: 50%; }
    PromptInspector.-short #insp-messages { max-height: 6; }
    PromptInspector #insp-text { height: auto; padding: 0 1; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Close", id="inspector.close"),
        Binding("t", "toggle_tokens", "Text / tokens", id="inspector.tokens"),
        Binding("c", "copy_text", "Copy text", id="inspector.copy"),
    ]

    def __init__(self, engine: EngineLike, target: InspectTarget) -> None:
        super().__init__()
        localize_bindings(self)
        self.engine = engine
        self.target = target
        self.prompt: Prompt | None = None
        self.error: str | None = None
        self.show_tokens = False

    def compose(self) -> ComposeResult:
        yield Static(t("insp.title", target=self.target.title), id="insp-title")
        with Vertical():
            # Below 30 rows the facts and the table scroll in the top half: at 80x24 they
            # pushed the prompt text off the screen.
            with VerticalScroll(id="insp-top"):
                yield Static(t("insp.building"), id="insp-summary")
                yield DataTable(id="insp-messages", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="insp-scroll"):
                yield Static("", id="insp-text")
        yield FittedFooter(compact=True)

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.height < SHORT_ROWS, "-short")

    def on_mount(self) -> None:
        self.set_class(self.app.size.height < SHORT_ROWS, "-short")
        table = self.query_one("#insp-messages", DataTable)
        table.add_columns("#", t("insp.col.role"), t("insp.col.tokens"), "", t("insp.col.text"))
        self.query_one("#insp-scroll").border_title = t("insp.text_title")
        self._build()

    @work(thread=True, exclusive=True, group="inspect")
    def _build(self) -> None:
        t = self.target
        try:
            prompt = self.engine.preview_prompt(t.messages, t.params,
                                                continue_last=t.continue_last, detail=True,
                                                thinking=t.thinking)
        except Exception as exc:  # NoModelError, a failing template, ...: say so
            self.post_message(PromptBuilt(error=first_line(exc)))
        else:
            self.post_message(PromptBuilt(prompt=prompt))

    def on_prompt_built(self, message: PromptBuilt) -> None:
        if message.error is not None:
            self._failed(message.error)
        else:
            self._show(message.prompt)

    def _failed(self, error: str) -> None:
        self.error = error
        self.query_one("#insp-summary", Static).update(
            Text(t("insp.failed", error=error), style="red"))

    def _show(self, prompt: Prompt) -> None:
        self.prompt = prompt
        self.query_one("#insp-summary", Static).update(
            summary(self.target, prompt, self.engine.info))
        table = self.query_one("#insp-messages", DataTable)
        table.clear()
        for row in message_rows(self.target, prompt):
            table.add_row(*row)
        self._render_text()

    def _render_text(self) -> None:
        prompt = self.prompt
        if prompt is None:
            return
        scroll = self.query_one("#insp-scroll")
        if self.show_tokens and prompt.pieces:
            body = token_text(prompt.pieces, prompt.special_tokens)
            scroll.border_title = t("insp.tokens_title", n=prompt.prompt_tokens)
        else:
            body = marked_text(prompt.text, prompt.special_tokens)
            scroll.border_title = t("insp.text_title_marked")
        self.query_one("#insp-text", Static).update(body)

    def action_toggle_tokens(self) -> None:
        self.show_tokens = not self.show_tokens
        self._render_text()

    def action_copy_text(self) -> None:
        if self.prompt is not None:
            self.app.copy_to_clipboard(self.prompt.text)
            self.notify(t("insp.copied", n=len(self.prompt.text)))

    def action_close(self) -> None:
        self.dismiss(None)


def history_until(history: list[StoredMessage], msg_id: int, include: bool
                  ) -> list[StoredMessage]:
    """Stored messages on the shown branch before ``msg_id`` (or up to it)."""
    out = []
    for m in history:
        if m.id == msg_id:
            if include:
                out.append(m)
            break
        out.append(m)
    return out


def next_reply_target(history: list[StoredMessage], chat_settings: dict[str, Any],
                      typed: str, thinking: bool | None) -> InspectTarget:
    """The prompt the next reply gets: the conversation plus what is typed now."""
    params = params_from(chat_settings)
    messages = chat_messages(history, chat_settings.get("system_prompt"))
    notes: tuple[str, ...] = ()
    typed = typed.strip()
    if typed:
        messages.append(ChatMessage("user", typed))
        notes = (t("insp.note.typed"),)
    elif not messages or messages[-1].role != "user":
        notes = (t("insp.note.no_user_last"),)
    return InspectTarget(t("insp.target.next"), messages, params, notes=notes,
                         thinking=thinking)


def past_target(view: MessageView, history: list[StoredMessage],
                chat_settings: dict[str, Any], thinking: bool | None) -> InspectTarget:
    """A reply's prompt (the messages before it), or for one of your messages the
    prompt that ended with it (``history``: the shown branch)."""
    current = params_from(chat_settings)
    if view.role == "assistant":
        prov = Provenance.from_dict(view.provenance)
        # None: a row from before the system prompt was recorded; "" is "no system prompt"
        system = prov.system_prompt if prov.system_prompt is not None \
            else chat_settings.get("system_prompt")
        before = history_until(history, view.msg_id, include=False)
        notes: tuple[str, ...] = (t("insp.note.rebuilt"),)
        if prov.segments:
            notes += (t("insp.note.continued"),)
        return InspectTarget(t("insp.target.past"), chat_messages(before, system),
                             params_from_provenance(prov, current),
                             recorded=prov if view.provenance else None,
                             notes=notes, thinking=prov.thinking)
    upto = history_until(history, view.msg_id, include=True)
    return InspectTarget(t("insp.target.reply_to"),
                         chat_messages(upto, chat_settings.get("system_prompt")),
                         current, notes=(t("insp.note.current"),), thinking=thinking)
