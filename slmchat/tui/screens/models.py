"""The model panel: find local models, choose load options, quantize and export.

``ModelsScreen(engine=..., settings=...)`` dismisses with a ``ModelSpec`` when the user
chooses Load (the app loads it in a worker and keeps the old model on failure), or with
None. Discovery, quantize-and-save and export run in thread workers and report back
with messages; nothing slow runs on the UI thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import (
    Button,
    Checkbox,
    DataTable,
    Footer,
    Input,
    Label,
    ProgressBar,
    Select,
    Static,
)

from slmchat.engine.model.discovery import ModelEntry, discover, estimate_memory, filter_entries
from slmchat.engine.model.spec import DTYPES, QUANTS, ModelSpec
from slmchat.fmt import human_bytes, human_count
from slmchat.tui.screens.model_tasks import (
    TaskDone,
    TaskProgress,
    free_path,
    run_export,
    run_quantize,
)

CPU_BNB_WARNING = (
    "bitsandbytes runs on the CPU but slowly (default model: 8-bit ~0.7 tok/s, 4-bit "
    "~1.6 tok/s, fp32 ~21 tok/s). cpu-int8 (torch dynamic int8) is faster than fp32 here."
)


@dataclass
class ModelsFound(Message):
    entries: list[ModelEntry]


def _opts(values: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(v, v) for v in values]


class ModelsScreen(Screen[ModelSpec | None]):
    """Discovery list + details + load options + quantize / export actions."""

    DEFAULT_CSS = """
    ModelsScreen { layout: vertical; }
    ModelsScreen #models-body { height: 1fr; }
    ModelsScreen #models-left { width: 3fr; }
    ModelsScreen #models-right { width: 2fr; border-left: solid $primary; padding: 0 1; }
    ModelsScreen #models-table { height: 1fr; }
    ModelsScreen .opt-row { height: auto; }
    ModelsScreen .opt-row Label { width: 14; padding: 1 0 0 0; }
    ModelsScreen .opt-row Select, ModelsScreen .opt-row Input { width: 1fr; }
    ModelsScreen #cpu-warning { color: $warning; height: auto; }
    ModelsScreen #estimate, ModelsScreen #details { height: auto; }
    ModelsScreen .buttons { height: auto; }
    ModelsScreen .buttons Button { margin: 0 1 0 0; min-width: 8; }
    ModelsScreen #task-progress { display: none; }
    ModelsScreen #task-progress.busy { display: block; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("ctrl+l", "load", "Load"),
        Binding("ctrl+r", "refresh", "Rescan"),
        Binding("ctrl+f", "focus_filter", "Filter"),
    ]

    def __init__(self, engine: Any = None, settings: Any = None, *,
                 discover_fn: Any = None, name: str | None = None) -> None:
        super().__init__(name=name)
        self.engine = engine
        self.settings = settings
        self._discover = discover_fn or (lambda: discover(settings))
        self.entries: list[ModelEntry] = []
        self.shown: list[ModelEntry] = []
        self.selected: ModelEntry | None = None
        self.busy = False

    # --- layout ---

    def compose(self) -> ComposeResult:
        with Horizontal(id="models-body"):
            with Vertical(id="models-left"):
                yield Input(placeholder="Filter models (type to narrow)…", id="filter")
                yield DataTable(id="models-table", cursor_type="row", zebra_stripes=True)
                yield Static("", id="current")
            with VerticalScroll(id="models-right"):
                yield Static("Scanning for models…", id="details")
                yield from self._option_rows()
                yield Static("", id="estimate")
                yield Static("", id="cpu-warning")
                with Horizontal(classes="buttons"):
                    yield Button("Load", id="load", variant="primary")
                    yield Button("Use cpu-int8", id="use-int8", variant="warning")
                    yield Button("Close", id="close")
                with Horizontal(classes="buttons"):
                    yield Button("Quantize & save", id="quantize")
                    yield Button("Export", id="export")
                yield ProgressBar(total=100, id="task-progress", show_eta=False)
                yield Static("", id="task-status")
        yield Footer()

    def _option_rows(self) -> ComposeResult:
        rows: list[tuple[str, Any]] = [
            ("dtype", Select(_opts(DTYPES), value="auto", allow_blank=False, id="opt-dtype")),
            ("device", Select(_opts(("auto", "cpu", "cuda", "mps")), value="auto",
                              allow_blank=False, id="opt-device")),
            ("quantization", Select(_opts(QUANTS), value="none", allow_blank=False,
                                    id="opt-quant")),
            ("4-bit type", Select(_opts(("nf4", "fp4")), value="nf4", allow_blank=False,
                                  id="opt-4bit-type")),
            ("compute dtype", Select(_opts(("bf16", "fp16", "fp32")), value="bf16",
                                     allow_blank=False, id="opt-compute")),
            ("adapter", Input(placeholder="optional LoRA adapter folder", id="opt-adapter")),
        ]
        for label, widget in rows:
            with Horizontal(classes="opt-row"):
                yield Label(label)
                yield widget
        yield Checkbox("4-bit double quantization", value=True, id="opt-double")

    def on_mount(self) -> None:
        table = self.query_one("#models-table", DataTable)
        table.add_columns("Name", "Format", "Arch", "Params", "Size", "Chat")
        info = getattr(self.engine, "info", None)
        self.query_one("#current", Static).update(
            f"Loaded: {info.label}" if info else "Loaded: (none)")
        self.action_refresh()

    # --- discovery ---

    def action_refresh(self) -> None:
        self.query_one("#details", Static).update("Scanning for models…")
        self._scan()

    @work(thread=True, exclusive=True, group="models-scan")
    def _scan(self) -> None:
        try:
            entries = list(self._discover())
        except Exception as exc:  # never crash the panel on a bad folder
            self.post_message(TaskDone("scan", f"Scan failed: {exc}", ok=False))
            entries = []
        self.post_message(ModelsFound(entries))

    def on_models_found(self, message: ModelsFound) -> None:
        self.entries = message.entries
        self._fill_table(self.query_one("#filter", Input).value)

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._fill_table(event.value)

    def _fill_table(self, query: str, select_path: str | None = None) -> None:
        table = self.query_one("#models-table", DataTable)
        table.clear()
        self.shown = filter_entries(self.entries, query)
        for i, e in enumerate(self.shown):
            fmt = e.format + (" ⚠" if e.problem else "")
            table.add_row(e.label, fmt, e.architecture, human_count(e.n_params),
                          human_bytes(e.size_bytes), "yes" if e.has_chat_template else "no",
                          key=str(i))
        if not self.shown:
            self.selected = None
            self.query_one("#details", Static).update(
                "No models match." if self.entries else "No models found.")
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
        lines = [
            f"[b]{entry.label}[/b]", f"path: {entry.path}", f"source: {entry.source}",
            f"format: {entry.format}" + (f" on base {entry.base}" if entry.base else ""),
            f"architecture: {entry.architecture}",
            f"parameters: {human_count(entry.n_params)}  size: {human_bytes(entry.size_bytes)}",
            f"chat template: {'yes' if entry.has_chat_template else 'no'}"
            + (f"  context: {entry.context_length}" if entry.context_length else ""),
        ]
        if entry.problem:
            lines.append(f"[red]problem: {entry.problem}[/red]")
        self.query_one("#details", Static).update("\n".join(lines))
        self._update_estimate()

    # --- options ---

    def current_spec(self) -> ModelSpec | None:
        if self.selected is None:
            return None
        adapter = self.query_one("#opt-adapter", Input).value.strip() or None
        return ModelSpec(
            path=self.selected.path,
            dtype=self.query_one("#opt-dtype", Select).value,  # type: ignore[arg-type]
            device=str(self.query_one("#opt-device", Select).value),
            quant=self.query_one("#opt-quant", Select).value,  # type: ignore[arg-type]
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
        slow = spec.quant in ("8bit", "4bit") and self._device_is_cpu(spec.device)
        warning.update(CPU_BNB_WARNING if slow else "")
        int8_button.display = slow
        entry = self.selected
        assert entry is not None
        if not entry.n_params:
            estimate.update("Memory estimate: unknown (no parameter count)")
            return
        est = estimate_memory(spec, entry, self._base_entry(entry))
        text = (f"Memory estimate: ~{human_bytes(est.total_bytes)} (weights "
                f"{human_bytes(est.weights_bytes)}, KV cache {human_bytes(est.kv_cache_bytes)})")
        if est.available_bytes is not None:
            text += f"; free RAM {human_bytes(est.available_bytes)}"
            if est.fits is False:
                text += " [red]— may not fit[/red]"
        estimate.update(text)

    # --- actions ---

    def action_close(self) -> None:
        self.dismiss(None)

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_load(self) -> None:
        spec = self.current_spec()
        if spec is None:
            self.notify("Choose a model first.", severity="warning")
            return
        self.dismiss(spec)

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
            self.notify("Choose a model first.", severity="warning")
            return
        if self.busy:
            self.notify("A quantize/export job is already running.", severity="warning")
            return
        from slmchat.paths import models_dir

        stem = self.selected.name.replace("/", "-").strip("-") or "model"
        root = models_dir()
        self.busy = True
        bar = self.query_one("#task-progress", ProgressBar)
        bar.add_class("busy")
        bar.update(progress=0)
        if task == "quantize":
            method = "cpu-int8" if spec.quant in ("cpu-int8", "none") else "bnb"
            bits = 4 if spec.quant == "4bit" else 8
            suffix = "cpu-int8" if method == "cpu-int8" else f"bnb-{bits}bit"
            self._run_quantize(spec.with_(quant="none"), free_path(root / f"{stem}-{suffix}"),
                               method, bits)
        else:
            self._run_export(spec.with_(quant="none"), root, stem)

    @work(thread=True, exclusive=True, group="models-task")
    def _run_quantize(self, spec: ModelSpec, out: Path, method: str, bits: int) -> None:
        run_quantize(spec, out, method, bits, self.post_message)

    @work(thread=True, exclusive=True, group="models-task")
    def _run_export(self, spec: ModelSpec, root: Path, stem: str) -> None:
        run_export(spec, self.selected, root, stem, self.post_message)

    def on_task_progress(self, message: TaskProgress) -> None:
        self.query_one("#task-progress", ProgressBar).update(progress=message.fraction * 100)
        self.query_one("#task-status", Static).update(f"{message.task}: {message.text}…")

    def on_task_done(self, message: TaskDone) -> None:
        self.query_one("#task-status", Static).update(message.text)
        if message.task == "scan":
            self.notify(message.text, severity="error")
            return
        self.busy = False
        self.query_one("#task-progress", ProgressBar).remove_class("busy")
        self.notify(message.text, title=message.task.capitalize(),
                    severity="information" if message.ok else "error",
                    timeout=8 if message.ok else 20)
        if message.ok:
            self._rescan_then_select(message.new_path)

    @work(thread=True, exclusive=True, group="models-scan")
    def _rescan_then_select(self, path: str | None) -> None:
        entries = list(self._discover())
        self.app.call_from_thread(self._after_rescan, entries, path)

    def _after_rescan(self, entries: list[ModelEntry], path: str | None) -> None:
        self.entries = entries
        box = self.query_one("#filter", Input)
        query = box.value
        if path and not any(e.path == path for e in filter_entries(entries, query)):
            query = ""  # show the model just written even if the filter hides it
            with self.prevent(Input.Changed):
                box.value = ""
        self._fill_table(query, select_path=path)
