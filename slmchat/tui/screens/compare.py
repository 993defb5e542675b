"""Two models side by side ("Compare with…"): each prompt streams into two columns.

The left column is the chat's model and settings; the right one is a second model (or
its cpu-int8 copy, or the same weights with another temperature or system prompt),
held beside the first by ``EngineLike.companion`` after a memory check. Both replies
run at once, a thread per side with a share of the cores each (benchmarks/
bench_compare.py: on 2 cores that beat interleaving token by token on one thread, and
one reply after the other), so both columns start together. Both replies are stored as
siblings under the prompt;
"Keep left / keep right" makes one the branch the conversation continues from, and the
other stays in the conversation as an alternative (‹ 1/2 › in the chat log).

``CompareSetup`` picks the right side; ``CompareScreen`` is the view; the chat screen
opens them (palette "Compare with…", F9). The fine-tune panel's "Compare"
opens the same view through ``compare_base_and_tuned``: the base model on the left, the
fine-tuned one on the right, greedy, in a conversation of its own.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Input, Label, Markdown, Select, Static
from textual.widgets.markdown import MarkdownStream

from slmchat.engine.devices import physical_cores
from slmchat.engine.generation.decode import GenerationChunk
from slmchat.engine.generation.interleave import interleave
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model.spec import ModelInfo, ModelSpec
from slmchat.engine.store.provenance import Provenance
from slmchat.engine.store.store import StoreWriteError
from slmchat.errors import SlmChatError, first_line
from slmchat.i18n import localize_bindings, t
from slmchat.tui.generation import (
    STATUS_FOR_FINISH,
    ReplyJob,
    chat_messages,
    provenance,
    title_from,
    weights_note,
)
from slmchat.tui.messages import (
    CompareAllDone,
    CompareDelta,
    CompareModelsFound,
    CompareRightLoaded,
    CompareSideDone,
)
from slmchat.tui.screens.editor import edit_in_editor
from slmchat.tui.widgets.footer import FittedFooter
from slmchat.tui.widgets.prompt_box import PromptBox
from slmchat.tui.widgets.settings_panel import params_from

if TYPE_CHECKING:
    from slmchat.engine.model.discovery import ModelEntry
    from slmchat.engine.session import EngineLike
    from slmchat.engine.store.store import Conversation, Store

SAME = "same"
SAME_INT8 = "same-int8"
SIDES = ("left", "right")
Schedule = Literal["parallel", "interleaved"]
FLUSH_INTERVAL = 0.1  # seconds between Markdown appends (as the chat: message_view.py)


def schedule_for(*infos: ModelInfo | None) -> Schedule:
    """How two replies share the cores, from benchmarks/bench_compare.py (2 cores, 64
    tokens, until both are done): on torch a thread per side with one torch thread each
    (3.0-3.2 s) beat interleaving token by token (6.1-6.9 s) and one reply after the other
    (5.6-6.3 s). On the onnx runtime all three take the same time (1.1-1.2 s), and
    interleaving is the one where both columns grow at the same pace (59 and 62 tok/s;
    a thread per side gave 85 and 63), so two onnx sides interleave."""
    from slmchat.engine import runtimes

    if infos and all(info is not None and runtimes.runtime_of(info).interleaves for info in infos):
        return "interleaved"
    return "parallel"


@contextlib.contextmanager
def threads_per_side(sides: int) -> Iterator[None]:
    """Give each side's reply its share of the cores: the engine sets its torch thread
    count from SLMCHAT_THREADS at the start of each reply (engine/devices.py). torch's
    thread count is per process, so two replies asking for every core each would
    fight over them."""
    before = os.environ.get("SLMCHAT_THREADS")
    os.environ["SLMCHAT_THREADS"] = str(max(1, physical_cores() // sides))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("SLMCHAT_THREADS", None)
        else:
            os.environ["SLMCHAT_THREADS"] = before


@dataclass(frozen=True)
class CompareChoice:
    """The right-hand side: a model (None: the left one's weights) and overrides."""

    spec: ModelSpec | None = None
    temperature: float | None = None
    system_prompt: str | None = None  # None: the chat's; "": none


@dataclass
class Side:
    """One column's generation: engine, settings, and what it has produced."""

    name: str
    engine: EngineLike
    params: SamplingParams
    system_prompt: str | None
    msg_id: int = 0
    text: str = ""
    status: str = ""
    prov: dict[str, Any] = field(default_factory=dict)


def spec_of(info: ModelInfo) -> ModelSpec:
    """A spec that loads the model ``info`` describes again."""
    quant = info.quant if info.quant in ("none", "8bit", "4bit", "cpu-int8") else "none"
    return ModelSpec(path=info.path, dtype=info.dtype if info.dtype in ("fp32", "bf16", "fp16")
                     else "auto", device=info.device, quant=quant,  # type: ignore[arg-type]
                     adapter=info.adapter)


def describe(info: ModelInfo | None, params: SamplingParams, system: str | None) -> str:
    """A column's title: model, quantization, temperature, system prompt."""
    label = info.label if info else "(no model)"
    sys_note = t("compare.no_system") if not system else t("compare.system",
                                                            text=system[:30])
    return t("compare.head", label=label, temperature=params.temperature, system=sys_note)


def stats(chunk: GenerationChunk | None, prov: dict[str, Any]) -> str:
    """TTFT, tok/s, token count, seed and the model's fingerprint."""
    record = Provenance.from_dict(prov)
    if chunk is None:
        return record.error or t("compare.no_reply")
    model = record.model
    parts = [f"TTFT {chunk.ttft_s:.2f}s" if chunk.ttft_s is not None else "TTFT –",
             f"{chunk.decode_tps:.1f} tok/s", f"{chunk.new_tokens} tok",
             f"seed {chunk.seed}",
             " ".join(x for x in (model.dtype, model.quant) if x and x != "none")
             if model is not None else "",
             # a tuned adapter's own fingerprint, not just its base's
             weights_note(model) if model is not None else ""]
    if chunk.cached_tokens:
        parts.append(t("compare.cached", n=chunk.cached_tokens))
    return " · ".join(parts)


class CompareSetup(ModalScreen[CompareChoice | None]):
    """Choose what the right column runs: a model and settings that differ."""

    # Below 30 rows the fields lose their borders (at 80x24 the bordered dialog ran off
    # the bottom, its buttons with it); it scrolls if the screen is shorter still.
    SHORT_ROWS = 30
    # (app.tcss: "compare-setup")

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="dialog.cancel")]

    def __init__(self, info: ModelInfo, discover_fn: Callable[[], list[ModelEntry]]) -> None:
        super().__init__(classes="dialog-screen")
        localize_bindings(self)
        self.info = info
        self.discover_fn = discover_fn
        self.entries: dict[str, ModelEntry] = {}

    def _base_options(self) -> list[tuple[str, str]]:
        options = [(t("compare.same"), SAME)]
        if self.info.quant == "none" and self.info.device == "cpu":
            options.append((t("compare.same_int8"), SAME_INT8))
        return options

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog compare-setup"):
            yield Label(t("compare.setup_title", name=self.info.name), classes="dialog-title")
            yield Select(self._base_options(), value=SAME, allow_blank=False, id="cmp-model")
            yield Label(t("compare.temperature_hint"), classes="dialog-hint")
            yield Input(id="cmp-temperature", placeholder=t("compare.temperature_example"))
            yield Label(t("compare.system_hint"), classes="dialog-hint")
            yield Input(id="cmp-system")
            yield Label(t("compare.adapter_hint"), classes="dialog-hint")
            yield Input(id="cmp-adapter")
            with Horizontal(classes="buttons"):
                yield Button(t("compare.ok"), id="ok", variant="primary", compact=True)
                yield Button(t("dialog.cancel"), id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#cmp-model", Select).focus()
        self._fit(self.app.size.height)
        self._scan()

    def on_resize(self, event: events.Resize) -> None:
        self._fit(event.size.height)

    def _fit(self, rows: int) -> None:
        short = rows < self.SHORT_ROWS
        self.set_class(short, "-short")
        for field_ in self.query(".compare-setup Input, .compare-setup Select"):
            field_.compact = short  # type: ignore[attr-defined]

    @work(thread=True, exclusive=True, group="compare-scan")
    def _scan(self) -> None:
        try:
            entries = [e for e in self.discover_fn() if e.problem is None]
        except Exception:  # a bad folder must not break the dialog: same-model still works
            entries = []
        self.post_message(CompareModelsFound(entries))

    def on_compare_models_found(self, message: CompareModelsFound) -> None:
        self._fill(message.entries)

    def _fill(self, entries: list[ModelEntry]) -> None:
        self.entries = {f"path:{e.path}": e for e in entries}
        select = self.query_one("#cmp-model", Select)
        value = select.value
        select.set_options(self._base_options()
                           + [(f"{e.label} ({e.format})", key) for key, e in self.entries.items()])
        select.value = value

    def choice(self) -> CompareChoice:
        """The dialog's values; SlmChatError for a bad temperature."""
        value = str(self.query_one("#cmp-model", Select).value)
        adapter = self.query_one("#cmp-adapter", Input).value.strip() or None
        spec: ModelSpec | None = None
        if value == SAME_INT8:
            spec = replace(spec_of(self.info), quant="cpu-int8")
        elif value in self.entries:
            spec = ModelSpec(path=self.entries[value].path, device=self.info.device)
        if adapter:
            spec = replace(spec or spec_of(self.info), adapter=adapter)
        temp_text = self.query_one("#cmp-temperature", Input).value.strip()
        temperature = None
        if temp_text:
            try:
                temperature = float(temp_text)
            except ValueError as exc:
                raise SlmChatError(t("compare.bad_temperature", text=repr(temp_text))) from exc
        system_text = self.query_one("#cmp-system", Input).value
        system = None if not system_text.strip() else "" if system_text.strip() == "-" \
            else system_text
        return CompareChoice(spec, temperature, system)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id != "ok":
            self.dismiss(None)
            return
        try:
            self.dismiss(self.choice())
        except SlmChatError as exc:
            self.notify(str(exc), severity="error")

    def action_cancel(self) -> None:
        self.dismiss(None)


class CompareScreen(Screen[int | None]):
    """Two columns; each prompt goes to both. Dismisses with the conversation id."""

    DEFAULT_CSS = """
    CompareScreen { layout: vertical; }
    CompareScreen #cmp-title { height: 1; padding: 0 1; background: $primary 30%;
        text-style: bold; }
    CompareScreen #cmp-asked { height: auto; max-height: 4; padding: 0 1; color: $text-muted; }
    CompareScreen #cmp-columns { height: 1fr; }
    CompareScreen .cmp-col { width: 1fr; border: round $primary 40%; }
    CompareScreen .cmp-col.-kept { border: round $success; }
    CompareScreen .cmp-head { height: auto; padding: 0 1; text-style: bold; }
    CompareScreen .cmp-body { height: 1fr; }
    CompareScreen .cmp-stats { height: auto; padding: 0 1; color: $text-muted; }
    CompareScreen #cmp-hint { height: auto; padding: 0 1; }
    CompareScreen #cmp-hint.-warning { background: $warning 30%; text-style: bold; }
    CompareScreen #cmp-prompt { height: auto; max-height: 6; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "stop_or_close", "Stop / close", id="compare.stop"),
        Binding("alt+left", "keep('left')", "Keep left", id="compare.keep_left"),
        Binding("alt+right", "keep('right')", "Keep right", id="compare.keep_right"),
    ]

    def __init__(self, engine: EngineLike, store: Store, conv: Conversation | None,
                 chat_settings: dict[str, Any], choice: CompareChoice,
                 schedule: Schedule | None = None, left: ModelSpec | None = None,
                 titles: tuple[str, str] | None = None) -> None:
        """``left``: a model for the left column instead of the chat's own (loaded beside
        it like the right one); ``titles``: what to call the two columns."""
        super().__init__()
        localize_bindings(self)
        self.schedule: Schedule = schedule or "parallel"  # None: chosen once both load
        self._auto_schedule = schedule is None
        self.left_spec = left
        self.titles = titles
        self.engine = engine
        self.store = store
        self.conv = conv
        self.chat_settings = chat_settings
        self.choice = choice
        self.right_engine: EngineLike | None = None
        self.left_engine: EngineLike | None = None  # only when ``left`` is given
        self.sides: dict[str, Side] = {}
        self.running = False
        self.unkept = False  # both replies are in; neither chosen yet
        self.kept: str | None = None
        self._streams: dict[str, MarkdownStream] = {}
        self._pending: dict[str, list[str]] = {name: [] for name in SIDES}
        self._cancel: list[Any] = []

    def compose(self) -> ComposeResult:
        yield Static(t("compare.loading"), id="cmp-title")
        yield Static("", id="cmp-asked")
        with Horizontal(id="cmp-columns"):
            for side in SIDES:
                with Vertical(classes="cmp-col", id=f"cmp-{side}"):
                    yield Static("", classes="cmp-head", id=f"cmp-{side}-head")
                    with VerticalScroll(classes="cmp-body"):
                        yield Markdown("", id=f"cmp-{side}-md")
                    yield Static("", classes="cmp-stats", id=f"cmp-{side}-stats")
        yield Static(t("compare.type_prompt"), id="cmp-hint")
        yield PromptBox(id="cmp-prompt")
        yield FittedFooter(compact=True)

    # --- set-up ---

    def _params(self) -> tuple[SamplingParams, SamplingParams]:
        left = params_from(self.chat_settings)
        right = left if self.choice.temperature is None else replace(
            left, temperature=self.choice.temperature).validate()
        return left, right

    def on_mount(self) -> None:
        self.query_one("#cmp-prompt", PromptBox).focus()
        self.set_interval(FLUSH_INTERVAL, self._flush)
        self._load_right()

    @work(thread=True, exclusive=True, group="compare-load")
    def _load_right(self) -> None:
        try:
            left = (None if self.left_spec is None
                    else self.engine.companion(self.left_spec))
            right = self.engine.companion(self.choice.spec)
        except Exception as exc:  # ModelLoadError (memory check, load failure): one line
            self.post_message(CompareRightLoaded(error=first_line(exc)))
        else:
            self.post_message(CompareRightLoaded(engine=right, left=left))

    def on_compare_right_loaded(self, message: CompareRightLoaded) -> None:
        if message.error is not None:
            self._load_failed(message.error)
        else:
            if message.left is not None:
                self.left_engine = message.left
            self._loaded(message.engine)

    def _load_failed(self, error: str) -> None:
        self.query_one("#cmp-title", Static).update(t("compare.load_failed"))
        self.query_one("#cmp-right-stats", Static).update(error)
        self.query_one("#cmp-hint", Static).update(t("compare.esc_back"))
        self.notify(error, title=t("compare.title"), severity="error", timeout=15)

    def _loaded(self, right: EngineLike) -> None:
        self.right_engine = right
        try:
            lp, rp = self._params()
        except SlmChatError as exc:
            self._load_failed(str(exc))
            return
        system = self.chat_settings.get("system_prompt")
        rsys = system if self.choice.system_prompt is None else self.choice.system_prompt
        self.sides = {"left": Side("left", self.left_engine or self.engine, lp, system),
                      "right": Side("right", right, rp, rsys)}
        for i, side in enumerate(self.sides.values()):
            head = describe(side.engine.info, side.params, side.system_prompt)
            if self.titles:
                head = f"{self.titles[i]} · {head}"
            # Text, not markup: a tuned model's name holds "[lora on BASE]".
            self.query_one(f"#cmp-{side.name}-head", Static).update(Text(head))
        if self._auto_schedule:
            self.schedule = schedule_for(*(side.engine.info for side in self.sides.values()))
        how = t(f"compare.schedule.{self.schedule}")
        self.query_one("#cmp-title", Static).update(t("compare.ready", how=how))

    # --- a prompt to both sides ---

    def on_prompt_box_editor_requested(self, event: PromptBox.EditorRequested) -> None:
        event.stop()
        edited = edit_in_editor(self.app, event.box.text)
        if edited is not None:
            event.box.set_text(edited.rstrip("\n"))

    async def on_prompt_box_submitted(self, event: PromptBox.Submitted) -> None:
        event.stop()
        text = event.text.strip()
        if not text:
            return
        if not self.sides:
            self.notify(t("compare.not_ready"), severity="warning")
            return
        if self.running:
            self.notify(t("compare.still_writing"), severity="warning")
            return
        if self.unkept:
            # The prompt stays in the box; the hint line above it says what to do, in the
            # warning colour, where the eyes are (a toast alone went unnoticed).
            hint = self.query_one("#cmp-hint", Static)
            hint.update(t("compare.keep_first"))
            hint.add_class("-warning")
            self.notify(t("compare.keep_first"), severity="warning")
            return
        self.query_one("#cmp-prompt", PromptBox).clear()
        await self.ask(text)

    async def ask(self, text: str) -> None:
        # The question and both reply rows are saved together or not at all (a full disk).
        try:
            with self.store.transaction():
                conv = self.conv or self.store.create_conversation(title_from(text),
                                                                   self.chat_settings)
                user = self.store.add_message(conv.id, "user", text)
                ids = {name: self.store.add_message(conv.id, "assistant", "",
                                                    status="streaming", parent_id=user.id).id
                       for name in self.sides}
        except StoreWriteError as exc:
            self.query_one("#cmp-prompt", PromptBox).set_text(text)  # kept for another try
            self.notify(t("chat.not_saved", error=exc), title=t("chat.not_saved_title"),
                        severity="error", timeout=30)
            return
        self.conv = conv
        history = self.store.messages(conv.id)
        for name, side in self.sides.items():
            side.text, side.status, side.prov = "", "streaming", {}
            side.msg_id = ids[name]
            self.query_one(f"#cmp-{name}", Vertical).remove_class("-kept")
            self.query_one(f"#cmp-{name}-stats", Static).update("…")
            md = self.query_one(f"#cmp-{name}-md", Markdown)
            await md.update("")
            self._streams[name] = Markdown.get_stream(md)
        self.kept = None
        self.query_one("#cmp-asked", Static).update(t("compare.you", text=text))
        self.query_one("#cmp-hint", Static).update(t("compare.writing"))
        jobs = {name: ReplyJob(side.msg_id, chat_messages(history, side.system_prompt),
                               side.params, side.engine.info)
                for name, side in self.sides.items()}
        self._cancel = [job.cancel for job in jobs.values()]
        self.running = True
        self._generate(jobs)

    @work(thread=True, exclusive=True, group="compare")
    def _generate(self, jobs: dict[str, ReplyJob]) -> None:
        """Both replies: a thread per side with a share of the cores each ("parallel"),
        or one thread taking a token from each side in turn ("interleaved")."""
        if self.schedule == "parallel":
            with threads_per_side(len(jobs)):
                threads = [threading.Thread(target=self._run_sides, args=({n: j},),
                                            name=f"compare-{n}", daemon=True)
                           for n, j in jobs.items()]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
        else:
            self._run_sides(jobs)
        self.post_message(CompareAllDone())

    def on_compare_all_done(self, message: CompareAllDone) -> None:
        self._all_done()

    def _run_sides(self, jobs: dict[str, ReplyJob]) -> None:
        """Stream ``jobs`` (interleaved when more than one), write each reply to the store
        as it grows, and report text and results as messages (tui/messages.py)."""
        writers = {n: self.store.reply_writer(j.msg_id) for n, j in jobs.items()}
        last: dict[str, GenerationChunk | None] = dict.fromkeys(jobs)
        errors: dict[str, str | None] = dict.fromkeys(jobs)
        streams = {n: self._stream(n, j, errors) for n, j in jobs.items()}
        for name, chunk in interleave(streams, "interleaved"):
            last[name] = chunk
            if chunk.text:
                writers[name].append(chunk.text)
                self.post_message(CompareDelta(name, chunk.text))
        for name, job in jobs.items():
            chunk = last[name]
            error = errors[name] or (chunk.error if chunk is not None else None)
            finish = chunk.finish_reason if chunk is not None else None
            status = STATUS_FOR_FINISH.get(finish or "", "error" if error else "stopped")
            prov = provenance(job, chunk, status, error)
            prov["compare"] = {"side": name, "schedule": self.schedule}
            try:
                writers[name].finish(status, prov)
            except Exception as exc:  # the store was closed on exit
                prov["error"] = t("compare.not_saved", error=str(exc))
            self.post_message(CompareSideDone(name, status, chunk, prov))

    def _stream(self, name: str, job: ReplyJob, errors: dict[str, str | None]) -> Any:
        engine = self.sides[name].engine
        try:
            yield from engine.stream_chat(job.messages, job.params, job.cancel)
        except Exception as exc:  # one side failing must not stop the other
            errors[name] = first_line(exc)

    def on_compare_delta(self, message: CompareDelta) -> None:
        self._delta(message.side, message.text)

    def on_compare_side_done(self, message: CompareSideDone) -> None:
        self._side_done(message.side, message.status, message.chunk, message.prov)

    def _delta(self, name: str, text: str) -> None:
        self.sides[name].text += text
        self._pending[name].append(text)

    async def _flush(self) -> None:
        """Hand what arrived since the last tick to each column's MarkdownStream."""
        for name, pending in self._pending.items():
            stream = self._streams.get(name)
            if pending and stream is not None:
                text = "".join(pending)
                pending.clear()
                await stream.write(text)

    def _side_done(self, name: str, status: str, chunk: GenerationChunk | None,
                   prov: dict[str, Any]) -> None:
        side = self.sides[name]
        side.status, side.prov = status, prov
        note = "" if status == "done" else f"[{t(f'compare.status.{status}')}] "
        self.query_one(f"#cmp-{name}-stats", Static).update(note + stats(chunk, prov))
        self.call_later(self._close_stream, name)

    async def _close_stream(self, name: str) -> None:
        await self._flush()
        stream = self._streams.pop(name, None)
        if stream is not None:
            await stream.stop()

    def _all_done(self) -> None:
        self.running = False
        self.unkept = True
        self._cancel = []
        self.query_one("#cmp-hint", Static).update(t("compare.keep_hint"))

    # --- choosing ---

    def action_keep(self, name: str) -> None:
        if self.running:
            self.notify(t("compare.wait_both"), severity="warning")
            return
        side = self.sides.get(name)
        if side is None or not side.msg_id:
            self.notify(t("compare.nothing_to_keep"), severity="warning")
            return
        self.store.set_active(side.msg_id)
        self.unkept = False
        self.kept = name
        for other in SIDES:
            self.query_one(f"#cmp-{other}", Vertical).set_class(other == name, "-kept")
        hint = self.query_one("#cmp-hint", Static)
        hint.update(t(f"compare.kept.{name}"))
        hint.remove_class("-warning")

    def action_stop_or_close(self) -> None:
        if self.running:
            for token in self._cancel:
                token.cancel()
            return
        if self.unkept:  # leaving without a choice: the chat's own model's reply
            self.action_keep("left")
        self.right_engine = self.left_engine = None  # frees the models loaded for this
        self.dismiss(self.conv.id if self.conv is not None else None)


def compare_base_and_tuned(app: App[Any], engine: EngineLike, store: Store,
                           chat_settings: dict[str, Any], base: ModelSpec, tuned: ModelSpec,
                           titles: tuple[str, str],
                           opened: Callable[[int | None], Any] | None = None) -> None:
    """The fine-tune panel's "Compare": base on the left, tuned on the right, greedy (so
    a difference is the weights', not the sampler's), in a new conversation that
    ``opened`` receives on close. Both load beside the chat's model after a memory
    check (sharing its weights when it is the base)."""
    greedy = {**chat_settings, "temperature": 0.0}
    app.push_screen(CompareScreen(engine, store, None, greedy, CompareChoice(spec=tuned),
                                  left=base, titles=titles), opened)
