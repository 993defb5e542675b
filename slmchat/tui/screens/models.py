"""The model panel: find local models, choose load options, quantize and export.

``ModelsPanel`` is a widget: docked beside the chat (``docked=True``, stacked to fit a
side column) or inside ``ModelsScreen`` at full width. It posts ``ModelsPanel.Chosen``
with a ``ModelSpec`` when the user chooses Load (the app loads it in a worker and keeps
the old model on failure) and ``ModelsPanel.Closed`` on Esc/Close. ``ModelsScreen``
turns those into ``dismiss(spec)`` / ``dismiss(None)``. Discovery, quantize-and-save and
export run in thread workers and report back with messages; nothing slow runs on the UI
thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from rich.cells import cell_len, set_cell_size
from rich.markup import escape
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import (
    Button,
    Checkbox,
    DataTable,
    Input,
    Label,
    ProgressBar,
    Select,
    Static,
)

from slmchat.engine.model.discovery import ModelEntry, discover, estimate_memory, filter_entries
from slmchat.engine.model.spec import DTYPES, QUANTS, ModelSpec, Runtime
from slmchat.fmt import human_bytes, human_count
from slmchat.i18n import has, localize_bindings, t
from slmchat.tui.messages import ModelsFound, TaskDone, TaskProgress
from slmchat.tui.screens.dialogs import TextPrompt
from slmchat.tui.screens.model_tasks import free_path, run_export, run_quantize
from slmchat.tui.widgets.footer import FittedFooter

# The onnx runtime's int8 copy: the recommended CPU choice (ModelSpec.runtime="onnx"; saved
# with `quantize --method onnx-int8`), listed with the quantizations.
ONNX_CHOICE = "onnx-int8"
ONNX_RUNTIME: Runtime = "onnx"  # the name of engine/runtimes/onnx.py


def quant_options() -> list[tuple[str, str]]:
    return [(t("models.quant.none"), "none"), (t("models.quant.onnx"), ONNX_CHOICE),
            *((q, q) for q in QUANTS if q != "none")]


def _opts(values: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(v, v) for v in values]


def fit_name(name: str, width: int) -> str:
    """A model's name in ``width`` cells: a path keeps its end ("…smol-cpu-int8", where
    paths differ), a plain name its start (the details beside the table show it whole)."""
    if cell_len(name) <= width:
        return name
    if "/" in name:
        tail = name
        while cell_len(tail) > width - 1:
            tail = tail[1:]
        return "…" + tail
    return set_cell_size(name, width - 1) + "…"


class ModelsPanel(Vertical):
    """Discovery list + details + load options + quantize / export actions."""

    class Chosen(Message):
        """Load this model (the panel's Load, Enter on a row)."""

        def __init__(self, spec: ModelSpec) -> None:
            super().__init__()
            self.spec = spec

    class Closed(Message):
        """Esc or Close: the host closes the panel."""

    DEFAULT_CSS = """
    ModelsPanel { height: 1fr; }
    ModelsPanel.-docked #models-body { layout: vertical; }
    ModelsPanel.-docked #models-left { width: 1fr; height: 2fr; }
    ModelsPanel.-docked #models-right { width: 1fr; height: 3fr; min-width: 0;
                                        border-left: none; border-top: solid $primary; }
    ModelsPanel #models-body { height: 1fr; }
    ModelsPanel #models-left { width: 3fr; }
    ModelsPanel #models-right { width: 2fr; min-width: 34; border-left: solid $primary;
                                 padding: 0 1; }
    ModelsPanel #filter { margin: 0 0 1 0; }
    ModelsPanel #models-table { height: 1fr; }
    ModelsPanel #models-details { height: 1fr; }
    ModelsPanel .opt-row { height: 1; margin: 0 0 0 0; }
    ModelsPanel .opt-row Label { width: 14; }
    ModelsPanel .opt-row Select, ModelsPanel .opt-row Input { width: 1fr; }
    ModelsPanel #details { height: auto; margin: 0 0 1 0; }
    ModelsPanel #estimate { height: auto; margin: 1 0 0 0; }
    ModelsPanel #cpu-warning { color: $warning; height: auto; }
    ModelsPanel #models-actions { height: auto; border-top: solid $primary 50%; }
    ModelsPanel .buttons { height: 1; margin: 1 0 0 0; }
    ModelsPanel .buttons Button { margin: 0 1 0 0; width: auto; min-width: 6; }
    ModelsPanel #task-progress { display: none; }
    ModelsPanel #task-progress.busy { display: block; }
    ModelsPanel #task-status { height: auto; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="models.close"),
        Binding("f5", "load", "Load", id="models.load"),  # F5 as the fine-tune panel's Use model
        Binding("ctrl+r", "refresh", "Rescan", id="models.rescan"),
        Binding("ctrl+f", "focus_filter", "Filter", id="models.filter"),
    ]

    def __init__(self, engine: Any = None, settings: Any = None, *,
                 discover_fn: Any = None, docked: bool = False, id: str | None = None) -> None:
        super().__init__(id=id, classes="-docked" if docked else "")
        localize_bindings(self)
        self.docked = docked
        self.engine = engine
        self.settings = settings
        self._discover = discover_fn or (lambda: discover(settings))
        self.entries: list[ModelEntry] = []
        self.shown: list[ModelEntry] = []
        self.selected: ModelEntry | None = None
        self.busy = False
        self._table_width = 0  # the width the table's columns were fitted to

    # --- layout ---

    def compose(self) -> ComposeResult:
        with Horizontal(id="models-body"):
            with Vertical(id="models-left"):
                yield Input(placeholder=t("models.filter"), id="filter",
                            compact=True)
                yield DataTable(id="models-table", cursor_type="row", zebra_stripes=True)
                yield Static("", id="current")
            with Vertical(id="models-right"):
                with VerticalScroll(id="models-details"):
                    yield Static(t("models.scanning"), id="details")
                    yield from self._option_rows()
                    yield Static("", id="estimate")
                    yield Static("", id="cpu-warning")
                # The actions stay in view whatever the terminal height.
                with Vertical(id="models-actions"):
                    with Horizontal(classes="buttons"):
                        yield Button(t("models.load"), id="load", variant="primary", compact=True)
                        yield Button(t("models.use_int8"), id="use-int8", variant="warning",
                                     compact=True)
                        yield Button(t("models.close"), id="close", compact=True)
                    with Horizontal(classes="buttons"):
                        yield Button(t("models.quantize"), id="quantize", compact=True)
                        yield Button(t("models.export"), id="export", compact=True)
                    yield ProgressBar(total=100, id="task-progress", show_eta=False)
                    yield Static("", id="task-status")

    def _option_rows(self) -> ComposeResult:
        def select(values: tuple[str, ...], value: str, id_: str) -> Select[str]:
            return Select(_opts(values), value=value, allow_blank=False, compact=True, id=id_)

        rows: list[tuple[str, Any]] = [
            ("models.opt.dtype", select(DTYPES, "auto", "opt-dtype")),
            ("models.opt.device", select(("auto", "cpu", "cuda", "mps"), "auto", "opt-device")),
            ("models.opt.quant", Select(quant_options(), value="none", allow_blank=False, compact=True,
                                    id="opt-quant")),
            ("models.opt.4bit_type", select(("nf4", "fp4"), "nf4", "opt-4bit-type")),
            ("models.opt.compute", select(("bf16", "fp16", "fp32"), "bf16", "opt-compute")),
            ("models.opt.adapter", Input(placeholder=t("models.adapter_placeholder"), id="opt-adapter",
                              compact=True)),
        ]
        for label_id, widget in rows:
            four_bit = widget.id in ("opt-4bit-type", "opt-compute")
            with Horizontal(classes="opt-row -bnb4" if four_bit else "opt-row"):
                yield Label(t(label_id))
                yield widget
        yield Checkbox(t("models.double_quant"), value=True, id="opt-double",
                       classes="-bnb4", compact=True)

    def on_mount(self) -> None:
        info = getattr(self.engine, "info", None)
        self.query_one("#current", Static).update(
            t("models.loaded", label=info.label) if info else t("models.loaded_none"))
        self.action_refresh()

    # --- discovery ---

    def action_refresh(self) -> None:
        self.query_one("#details", Static).update(t("models.scanning"))
        self._scan()

    @work(thread=True, exclusive=True, group="models-scan")
    def _scan(self, select_path: str | None = None) -> None:
        try:
            entries = list(self._discover())
        except Exception as exc:  # never crash the panel on a bad folder
            self.post_message(TaskDone("scan", t("models.scan_failed", error=exc), ok=False))
            entries = []
        self.post_message(ModelsFound(entries, select_path))

    def on_models_found(self, message: ModelsFound) -> None:
        self.entries = message.entries
        box = self.query_one("#filter", Input)
        query, path = box.value, message.select_path
        if path and not any(e.path == path for e in filter_entries(self.entries, query)):
            query = ""  # show the model just written even if the filter hides it
            with self.prevent(Input.Changed):
                box.value = ""
        self._fill_table(query, select_path=path)

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._fill_table(event.value)

    def on_resize(self, event: events.Resize) -> None:
        self.call_after_refresh(self._refit_table)  # once the table has its new width

    def _refit_table(self) -> None:
        if self.entries and self.query_one("#models-table").size.width != self._table_width:
            self._fill_table(self.query_one("#filter", Input).value,
                             select_path=self.selected.path if self.selected else None)

    def _fill_table(self, query: str, select_path: str | None = None) -> None:
        table = self.query_one("#models-table", DataTable)
        self.shown = filter_entries(self.entries, query)
        rows = [(e.label, e.format + (" ⚠" if e.problem else ""), human_bytes(e.size_bytes),
                 human_count(e.n_params), t("models.yes") if e.has_chat_template else t("models.no"),
                 e.architecture) for e in self.shown]
        # Columns are rebuilt with their widths measured here: DataTable's own measuring
        # runs later and could leave cells drawn at the header's width. Narrow terminals
        # scroll the table sideways, so the telling columns come first.
        table.clear(columns=True)
        widths = []
        for k, col in enumerate(("name", "format", "size", "params", "chat", "arch")):
            header = t(f"models.col.{col}")
            widths.append(min(48, max([cell_len(header), *(cell_len(row[k]) for row in rows)])))
        # The name gives way (cut with "…") before format, size and parameters leave the
        # screen: at 80 columns a run's long name pushed them off (one cell each side).
        room = table.size.width - 1  # the vertical scrollbar's cell
        if room > 0:
            widths[0] = max(min(widths[0], 12), min(widths[0],
                                                    room - sum(w + 2 for w in widths[1:4]) - 2))
        self._table_width = table.size.width
        for k, col in enumerate(("name", "format", "size", "params", "chat", "arch")):
            table.add_column(t(f"models.col.{col}"), width=widths[k])
        for i, row in enumerate(rows):
            table.add_row(fit_name(row[0], widths[0]), *row[1:], key=str(i))
        if not self.shown:
            self.selected = None
            self.query_one("#details", Static).update(
                t("models.no_match") if self.entries else t("models.none_found"))
            self._update_estimate()
            return
        index = 0
        if select_path:
            index = next((i for i, e in enumerate(self.shown) if e.path == select_path), 0)
        table.move_cursor(row=index)
        self._select(self.shown[index])

    @on(DataTable.RowHighlighted, "#models-table")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value is not None:
            idx = int(event.row_key.value)
            if 0 <= idx < len(self.shown):
                self._select(self.shown[idx])

    @on(DataTable.RowSelected, "#models-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_load()

    def _select(self, entry: ModelEntry) -> None:
        self.selected = entry
        context = t("models.context", n=entry.context_length) if entry.context_length else ""
        base = t("models.on_base", base=escape(entry.base)) if entry.base else ""
        lines = [
            f"[b]{escape(entry.label)}[/b]",
            f"{entry.format}{base} · {escape(entry.architecture)}",
            t("models.params", n=human_count(entry.n_params), size=human_bytes(entry.size_bytes))
            + context,
            t("models.template", yes_no=t("models.yes") if entry.has_chat_template
              else t("models.no"), source=entry.source),
            f"[dim]{escape(entry.path)}[/dim]",
        ]
        if entry.problem:
            problem = t("models.problem", problem=escape(entry.problem))
            lines.append(f"[red]{problem}[/red]")
        self.query_one("#details", Static).update("\n".join(lines))
        self._update_estimate()

    # --- options ---

    def current_spec(self) -> ModelSpec | None:
        if self.selected is None:
            return None
        adapter = self.query_one("#opt-adapter", Input).value.strip() or None
        quant = self.query_one("#opt-quant", Select).value
        return ModelSpec(
            path=self.selected.path,
            dtype=self.query_one("#opt-dtype", Select).value,  # type: ignore[arg-type]
            device=str(self.query_one("#opt-device", Select).value),
            quant="none" if quant == ONNX_CHOICE else quant,  # type: ignore[arg-type]
            runtime=ONNX_RUNTIME if quant == ONNX_CHOICE else "auto",
            bnb_4bit_quant_type=self.query_one("#opt-4bit-type", Select).value,  # type: ignore[arg-type]
            bnb_4bit_double_quant=self.query_one("#opt-double", Checkbox).value,
            bnb_4bit_compute_dtype=self.query_one("#opt-compute", Select).value,  # type: ignore[arg-type]
            adapter=adapter,
        )

    @on(Select.Changed)
    @on(Checkbox.Changed)
    @on(Input.Changed, "#opt-adapter")
    def _options_changed(self) -> None:
        self._update_estimate()

    def _device_is_cpu(self, device: str) -> bool:
        if device != "auto":
            return device == "cpu"
        try:
            from slmchat.engine.devices import resolve_device

            return resolve_device("auto") == "cpu"
        except Exception:
            return True

    def _base_entry(self, entry: ModelEntry) -> ModelEntry | None:
        if entry.format != "lora" or not entry.base:
            return None
        for e in self.entries:
            if e.path == entry.base or (e.path != "default" and entry.base
                                        and Path(e.path).resolve() == Path(entry.base).resolve()):
                return e
        return next((e for e in self.entries if e.source == "default"), None)

    def _update_estimate(self) -> None:
        spec = self.current_spec()
        warning = self.query_one("#cpu-warning", Static)
        int8_button = self.query_one("#use-int8", Button)
        estimate = self.query_one("#estimate", Static)
        if spec is None:
            estimate.update("")
            warning.update("")
            int8_button.display = False
            return
        for row in self.query(".-bnb4"):  # bitsandbytes 4-bit options: only where they apply
            row.display = spec.quant == "4bit"
        slow = spec.quant in ("8bit", "4bit") and self._device_is_cpu(spec.device)
        warning.update(t("models.cpu_bnb_warning") if slow else "")
        int8_button.display = slow
        entry = self.selected
        assert entry is not None
        if not entry.n_params:
            estimate.update(t("models.estimate_unknown"))
            return
        est = estimate_memory(spec, entry, self._base_entry(entry))
        text = t("models.estimate", total=human_bytes(est.total_bytes),
                 weights=human_bytes(est.weights_bytes), kv=human_bytes(est.kv_cache_bytes))
        if est.available_bytes is not None:
            text += t("models.free_ram", size=human_bytes(est.available_bytes))
            if est.fits is False:
                text += " [red]" + t("models.may_not_fit") + "[/red]"
        estimate.update(text)

    # --- actions ---

    def action_close(self) -> None:
        self.post_message(self.Closed())

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_load(self) -> None:
        spec = self.current_spec()
        if spec is None:
            self.notify(t("models.choose_first"), severity="warning")
            return
        self.post_message(self.Chosen(spec))

    @on(Button.Pressed)
    def _button(self, event: Button.Pressed) -> None:
        bid = event.button.id
        if bid == "load":
            self.action_load()
        elif bid == "close":
            self.action_close()
        elif bid == "use-int8":
            self.query_one("#opt-quant", Select).value = "cpu-int8"
            self.query_one("#opt-device", Select).value = "cpu"
        elif bid in ("quantize", "export"):
            self._start_task(bid)

    def _start_task(self, task: str) -> None:
        spec = self.current_spec()
        if spec is None or self.selected is None:
            self.notify(t("models.choose_first"), severity="warning")
            return
        if self.busy:
            self.notify(t("models.busy"), severity="warning")
            return
        from slmchat.paths import models_dir

        stem = self.selected.name.replace("/", "-").strip("-") or "model"
        root = models_dir()
        if task == "export":
            self._begin_task()
            self._run_export(spec.with_(quant="none"), self.selected, root, stem)
            return
        method = "cpu-int8" if spec.quant in ("cpu-int8", "none") else "bnb"
        method = ONNX_CHOICE if spec.runtime == ONNX_RUNTIME else method
        bits = 4 if spec.quant == "4bit" else 8
        suffix = method if method != "bnb" else f"bnb-{bits}bit"

        def chosen(folder: str | None) -> None:
            if not folder:
                return
            out = Path(folder).expanduser()
            if out.exists() and (not out.is_dir() or any(out.iterdir())):
                self.notify(t("models.exists", path=out), severity="error")
                return
            self._begin_task()
            self._run_quantize(spec.with_(quant="none"), out, method, bits)

        self.app.push_screen(TextPrompt(
            t("models.save_to", suffix=suffix, name=self.selected.name),
            str(free_path(root / f"{stem}-{suffix}")),
            hint=t("models.save_hint")),
            chosen)

    def _begin_task(self) -> None:
        self.busy = True
        bar = self.query_one("#task-progress", ProgressBar)
        bar.add_class("busy")
        bar.update(progress=0)

    @work(thread=True, exclusive=True, group="models-task")
    def _run_quantize(self, spec: ModelSpec, out: Path, method: str, bits: int) -> None:
        run_quantize(spec, out, method, bits, self.post_message)

    @work(thread=True, exclusive=True, group="models-task")
    def _run_export(self, spec: ModelSpec, entry: ModelEntry | None, root: Path,
                    stem: str) -> None:
        run_export(spec, entry, root, stem, self.post_message)

    def on_task_progress(self, message: TaskProgress) -> None:
        self.query_one("#task-progress", ProgressBar).update(progress=message.fraction * 100)
        name = f"models.progress.{message.task}"
        label = t(name) if has(name) else message.task
        self.query_one("#task-status", Static).update(f"{label}: {message.text}…")

    def on_task_done(self, message: TaskDone) -> None:
        self.query_one("#task-status", Static).update(message.text)
        if message.task == "scan":
            self.notify(message.text, severity="error")
            return
        self.busy = False
        self.query_one("#task-progress", ProgressBar).remove_class("busy")
        title = f"models.task.{message.task}"
        self.notify(message.text, title=t(title) if has(title) else message.task.capitalize(),
                    severity="information" if message.ok else "error",
                    timeout=8 if message.ok else 20)
        if message.ok:
            self._scan(message.new_path)


class ModelsScreen(Screen[ModelSpec | None]):
    """The model panel at full width (narrow terminals): dismisses with the chosen
    ``ModelSpec`` or None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="models_screen.close")]

    def __init__(self, engine: Any = None, settings: Any = None, *,
                 discover_fn: Any = None, name: str | None = None) -> None:
        super().__init__(name=name)
        localize_bindings(self)
        self.panel = ModelsPanel(engine, settings, discover_fn=discover_fn)

    def compose(self) -> ComposeResult:
        yield self.panel
        yield FittedFooter()

    def action_close(self) -> None:
        self.dismiss(None)

    def on_models_panel_chosen(self, message: ModelsPanel.Chosen) -> None:
        message.stop()
        self.dismiss(message.spec)

    def on_models_panel_closed(self, message: ModelsPanel.Closed) -> None:
        message.stop()
        self.dismiss(None)
