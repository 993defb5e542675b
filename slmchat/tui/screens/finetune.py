"""The fine-tune panel: pick a file, preview, start, watch, cancel/resume, use the result.

``FinetunePanel`` is a widget: docked beside the chat (``docked=True``: the chart and
the run's figures on top, the form below) or inside ``FinetuneScreen`` at full width.
It posts ``FinetunePanel.UseModel`` with a ``ModelSpec`` for a finished run's output
(the app loads it) and ``FinetunePanel.Closed``; ``FinetuneScreen`` dismisses with the
spec or None.
Runs are separate processes (``slmchat.engine.finetune.rundir.spawn``): closing the panel or the
app never stops them, and opening the panel re-attaches to every run in the runs folder
by reading its status.json and progress.jsonl on a one-second timer.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, ClassVar

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Input, Label, OptionList, ProgressBar, Select, Static
from textual.widgets.option_list import Option
from textual_plotext import PlotextPlot

from slmchat.engine.finetune import rundir as runs
from slmchat.engine.finetune.args import TrainArgs
from slmchat.engine.model.spec import ModelSpec
from slmchat.errors import SlmChatError
from slmchat.fmt import format_duration
from slmchat.i18n import get_language, has, localize_bindings, t
from slmchat.tui.messages import CompareRunRequested, PreviewText, RunSpawned
from slmchat.tui.widgets.footer import FittedFooter

STATE_MARK = {"running": "●", "done": "✓", "failed": "✗", "cancelled": "■", "dead": "!",
              "pending": "…"}


def run_label(r: runs.RunSummary) -> str:
    total = f"/{r.total_steps}" if r.total_steps else ""
    return f"{STATE_MARK.get(r.state, '?')} {r.name[:26]} {state_name(r.state)} {r.step}{total}"


def state_name(state: str) -> str:
    """A run state in the UI language ("running" -> "実行中"); unknown ones as they are."""
    return t(f"ft.state.{state}") if has(f"ft.state.{state}") else state


# plotext lays out its legend and axis label by characters, not terminal cells: a wide
# (Japanese) word pushes the plot out of its frame and drops the x-axis ticks, so the words
# inside the plot stay ASCII in every language. The title above the plot is translated.
PLOT_WORDS = ("step", "train", "eval")


def step_ticks(first: int, last: int, most: int = 5) -> list[int]:
    """Whole steps for the chart's x axis: at most ``most`` ticks, a round stride apart
    (1, 2, 5, 10, 20, 50, ...), from a multiple of it at or below ``first``."""
    span = max(1, last - first)
    strides = (m * 10 ** e for e in range(12) for m in (1, 2, 5))
    stride = next(s for s in strides if span // s <= most - 1)
    return list(range(first - first % stride, last + 1, stride))


class FinetunePanel(Vertical):
    class UseModel(Message):
        """Load a finished run's model."""

        def __init__(self, spec: ModelSpec) -> None:
            super().__init__()
            self.spec = spec

    class Closed(Message):
        """Esc or Close: the host closes the panel (runs keep going)."""

    DEFAULT_CSS = """
    FinetunePanel { height: 1fr; }
    FinetunePanel.-docked #ft-body { layout: vertical; }
    FinetunePanel.-docked #ft-left { width: 1fr; height: 1fr; border-right: none;
                                     border-top: solid $primary; }
    FinetunePanel.-docked #ft-right { height: auto; }
    FinetunePanel.-docked #ft-chart { height: 12; }
    FinetunePanel #ft-body { height: 1fr; }
    FinetunePanel #ft-left { width: 46; border-right: solid $primary; padding: 0 1; }
    FinetunePanel.-narrow #ft-left { width: 38; }
    FinetunePanel .ft-label { width: 11; color: $text-muted; }
    FinetunePanel.-wide-labels .ft-label { width: 13; }
    FinetunePanel #ft-browse { min-width: 3; width: 3; margin: 0 0 0 1; }
    FinetunePanel #ft-right { width: 1fr; padding: 0 1; }
    FinetunePanel #ft-runs { height: 5; }
    FinetunePanel .ft-row { height: 1; }
    FinetunePanel .ft-row Input { width: 1fr; }
    FinetunePanel .ft-row Select { width: 1fr; }
    FinetunePanel .ft-buttons { height: 1; margin: 1 0 0 0; }
    FinetunePanel .ft-buttons Button { margin: 0 1 0 0; width: auto; min-width: 6; }
    FinetunePanel #ft-preview { height: auto; color: $text-muted; margin: 1 0 0 0; }
    FinetunePanel #ft-chart { height: 1fr; min-height: 8; }
    FinetunePanel #ft-progress-row { height: 1; }
    FinetunePanel #ft-stats { height: auto; }
    FinetunePanel #ft-result { height: auto; }
    FinetunePanel .ft-section { text-style: bold; margin: 1 0 0 0; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="finetune.close"),
        Binding("f7", "start", "Start", id="finetune.start"),  # not Ctrl+S: the chat's settings
        # A finished run's actions without tabbing across the whole form.
        Binding("f5", "use_model", "Use model", id="finetune.use_model"),
        Binding("f6", "compare", "Compare", id="finetune.compare"),
    ]

    def __init__(self, engine: Any = None, settings: Any = None,
                 runs_root: Path | None = None, docked: bool = False,
                 id: str | None = None, data_file: str | None = None) -> None:
        super().__init__(id=id, classes="-docked" if docked else "")
        localize_bindings(self)
        self.set_class(get_language() == "ja", "-wide-labels")  # 2 cells a character
        self.docked = docked
        self.engine = engine  # the chat's: Compare loads base and tuned beside its model
        self.settings = settings
        self.runs_root = runs_root
        self.data_file = data_file  # a training file to start from (the chat's export)
        self.selected: Path | None = None
        self.summary: runs.RunSummary | None = None
        self._reader: runs.ProgressReader | None = None
        self._procs: list[subprocess.Popen[bytes]] = []
        self._listed: list[tuple[str, str]] = []
        self.train_points: list[tuple[int, float]] = []
        self.eval_points: list[tuple[int, float]] = []
        self.last_row: dict[str, Any] = {}

    # -- layout -----------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal(id="ft-body"):
            if self.docked:  # beside the chat: what you watch first, the form below
                yield from self._watch_column()
                yield from self._form_column()
            else:
                yield from self._form_column()
                yield from self._watch_column()

    def _form_column(self) -> ComposeResult:
        model = self.base_choice()
        with VerticalScroll(id="ft-left"):
            yield Label(t("ft.runs"), classes="ft-section")
            yield OptionList(id="ft-runs", compact=True)
            yield Label(t("ft.new_run"), classes="ft-section")
            with Horizontal(classes="ft-row"):
                yield Label(t("ft.field.data"), classes="ft-label")
                yield Input(placeholder=t("ft.file_placeholder"), id="ft-file",
                            compact=True)
                yield Button("…", id="ft-browse", tooltip=t("ft.browse"),
                             compact=True)
            yield from self._field(t("ft.field.model"), Input(value=model, id="ft-model", compact=True))
            yield from self._field(t("ft.field.method"), Select(
                [(m, m) for m in ("lora", "full", "qlora")], value="lora",
                allow_blank=False, id="ft-method", compact=True))
            yield from self._field(t("ft.field.max_steps"), Input(
                placeholder=t("ft.use_epochs"), id="ft-steps", type="integer", compact=True))
            yield from self._field(t("ft.field.epochs"), Input(value="1", id="ft-epochs",
                                                   type="number", compact=True))
            yield from self._field(t("ft.field.lr"), Input(placeholder=t("ft.auto"), id="ft-lr",
                                               type="number", compact=True))
            yield from self._field(t("ft.field.block_size"), Input(placeholder=t("ft.auto"),
                                                       id="ft-block", type="integer",
                                                       compact=True))
            yield from self._field(t("ft.field.batch_size"), Input(value="4", id="ft-batch",
                                                       type="integer", compact=True))
            yield from self._field(t("ft.field.lora_rank"), Input(value="8", id="ft-rank",
                                                      type="integer", compact=True))
            with Horizontal(classes="ft-buttons"):
                yield Button(t("ft.preview"), id="ft-preview-btn", compact=True)
                yield Button(t("ft.start"), id="ft-start", variant="primary", compact=True)
            yield Static("", id="ft-preview")

    def _watch_column(self) -> ComposeResult:
        with Vertical(id="ft-right"):
            yield Static(t("ft.no_run"), id="ft-title")
            yield PlotextPlot(id="ft-chart")
            with Horizontal(id="ft-progress-row"):
                yield ProgressBar(total=None, show_eta=False, id="ft-progress")
            yield Static("", id="ft-stats")
            yield Static("", id="ft-result")
            # Two short rows: every action stays reachable down to 80 columns.
            with Horizontal(classes="ft-buttons"):
                yield Button(t("ft.use"), id="ft-use", variant="success", compact=True)
                yield Button(t("ft.compare"), id="ft-compare", compact=True)
                yield Button(t("ft.close"), id="ft-close", compact=True)
            with Horizontal(classes="ft-buttons"):
                yield Button(t("ft.cancel_run"), id="ft-cancel", variant="error", compact=True)
                yield Button(t("ft.resume"), id="ft-resume", compact=True)

    def base_choice(self) -> str:
        """The model a new run starts from: the chat's model, or its base when that is a
        fine-tuned adapter (an adapter is refused as a base)."""
        from slmchat.engine.model.default import converted_dir
        from slmchat.engine.model.files import adapter_base

        info = getattr(self.engine, "info", None)
        if info is not None and info.kind == "default":
            return "default"
        path = info.path if info is not None else (
            getattr(getattr(self.settings, "model", None), "path", None) or "default")
        folder = Path(path).expanduser()
        if (folder / "adapter_config.json").is_file():
            try:
                path = adapter_base(folder)
            except SlmChatError:
                return "default"
        if path != "default" and Path(path).expanduser().resolve() == converted_dir().resolve():
            return "default"
        return path

    @staticmethod
    def _field(label: str, widget: Any) -> ComposeResult:
        with Horizontal(classes="ft-row"):
            yield Label(label, classes="ft-label")
            yield widget

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.width < 120 and not self.docked, "-narrow")

    def on_mount(self) -> None:
        self.use_data_file(self.data_file)
        self._draw_chart()
        self._update_buttons()
        self.refresh_runs()
        self.set_interval(1.0, self.refresh_runs)

    def use_data_file(self, path: str | None) -> None:
        """Start from ``path`` (the chat's exported marked replies), the field focused."""
        field = self.query_one("#ft-file", Input)
        if path:
            field.value = path
        field.focus()

    # -- run list and re-attach -------------------------------------------------------
    def refresh_runs(self) -> None:
        """Re-read the runs folder; attach to the newest running run when none is chosen."""
        for proc in list(self._procs):  # reap our finished children (no zombies)
            if proc.poll() is not None:
                self._procs.remove(proc)
        listed = runs.list_runs(self.runs_root)
        signature = [(str(r.path), run_label(r)) for r in listed]
        option_list = self.query_one("#ft-runs", OptionList)
        if signature != self._listed:
            self._listed = signature
            option_list.clear_options()
            option_list.add_options([Option(label, id=path) for path, label in signature])
            if self.selected is not None:
                for i, (path, _) in enumerate(signature):
                    if path == str(self.selected):
                        option_list.highlighted = i
        if self.selected is None and listed:
            live = [r for r in listed if r.state == "running"]
            self.select_run((live or listed)[0].path)
        elif self.selected is not None:
            self._poll_selected()

    @on(OptionList.OptionSelected, "#ft-runs")
    def _on_run_chosen(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.select_run(Path(event.option.id))

    def select_run(self, path: Path) -> None:
        if path != self.selected:
            self.selected = path
            self._reader = runs.ProgressReader(path)
            self.train_points, self.eval_points, self.last_row = [], [], {}
        self._poll_selected()

    def _poll_selected(self) -> None:
        if self.selected is None or self._reader is None:
            return
        rows = self._reader.read_new()
        if self._reader.reset:  # a resume rewrote the file: start the chart over
            self.train_points, self.eval_points = [], []
        for row in rows:
            step = int(row.get("step") or 0)
            if row.get("loss") is not None:
                self.train_points.append((step, float(row["loss"])))
            if row.get("eval_loss") is not None:
                self.eval_points.append((step, float(row["eval_loss"])))
            self.last_row = row
        if rows or self._reader.reset:
            self._draw_chart()
        self.summary = runs.summarize(self.selected)
        self._show_summary()

    # -- drawing ----------------------------------------------------------------------
    def _draw_chart(self) -> None:
        chart = self.query_one("#ft-chart", PlotextPlot)
        plt = chart.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(t("ft.chart.title"))
        step, train, held_out = PLOT_WORDS
        plt.xlabel(step)
        if self.train_points:
            plt.plot(*zip(*self.train_points, strict=True), label=train, marker="braille")
        if self.eval_points:
            plt.plot(*zip(*self.eval_points, strict=True), label=held_out, marker="dot")
        steps = [x for x, _ in (*self.train_points, *self.eval_points)]
        if steps:  # plotext spaces its ticks evenly: "0.0 3.8 7.5" for a 15-step run
            ticks = step_ticks(int(min(steps)), int(max(steps)))
            plt.xticks([float(x) for x in ticks], [str(x) for x in ticks])
        chart.refresh()

    def _show_summary(self) -> None:
        s = self.summary
        if s is None:
            return
        self.query_one("#ft-title", Static).update(
            f"[b]{s.name}[/b] · "
            + t("ft.method_on", method=s.method or "?", data=Path(s.data).name or "?")
            + f" · [{'green' if s.state == 'done' else 'yellow'}]{state_name(s.state)}[/]")
        bar = self.query_one("#ft-progress", ProgressBar)
        total = s.total_steps or int(self.last_row.get("total_steps") or 0) or None
        bar.update(total=total, progress=s.step if s.state != "done" else (total or 0))
        row = self.last_row
        parts = [t("ft.stat.step", step=s.step, total=total or "?")]
        if row.get("tokens_per_s"):
            parts.append(t("ft.stat.tps", tps=row["tokens_per_s"]))
        if s.state == "running" and row.get("eta_s") is not None:
            parts.append(t("ft.stat.eta", eta=format_duration(row["eta_s"])))
        if row.get("lr"):
            parts.append(t("ft.stat.lr", lr=row["lr"]))
        if row.get("elapsed_s"):
            parts.append(t("ft.stat.elapsed", elapsed=format_duration(row["elapsed_s"])))
        self.query_one("#ft-stats", Static).update(t("ft.stat.sep").join(parts))
        self.query_one("#ft-result", Static).update(self._result_text(s))
        self._update_buttons()

    def _result_text(self, s: runs.RunSummary) -> str:
        m = s.metrics
        lines = []
        if m.get("perplexity_before") is not None:
            after = m.get("perplexity_after")
            after_text = f"{after:.2f}" if after is not None else "…"
            tokens = s.data_stats.get("eval_tokens")
            if tokens is None:  # a run from before the held-out end was measured in tokens
                lines.append(t("ft.ppl_plain", before=m["perplexity_before"], after=after_text))
            else:
                lines.append(t("ft.ppl", before=m["perplexity_before"], after=after_text,
                               tokens=f"{tokens:,}"))
        if s.data_stats.get("eval_warning"):
            lines.append("[yellow]⚠ " + t("ft.few_eval", n=s.data_stats.get("eval_blocks"),
                                          size=s.data_stats.get("block_size")) + "[/]")
        if m.get("pref_share_before") is not None:  # a DPO run (finetune --method dpo)
            after = m.get("pref_share_after")
            lines.append(t("ft.pref", before=f"{m['pref_share_before']:.0%}",
                           after=f"{after:.0%}" if after is not None else "…"))
        warning = runs.overfitting_warning(self.eval_points)
        if warning is not None:
            lines.append(f"[yellow]⚠ {warning}[/]")
        if s.state == "done":
            lines.append(t("ft.saved_to", path=s.out))
        elif s.message and s.state in ("failed", "cancelled", "dead"):
            lines.append(f"[{'red' if s.state != 'cancelled' else 'yellow'}]{s.message}[/]")
        elif s.message:
            lines.append(s.message)
        return "\n".join(lines)

    def _update_buttons(self) -> None:
        s = self.summary
        state = s.state if s else ""
        self.query_one("#ft-cancel", Button).disabled = state != "running"
        self.query_one("#ft-resume", Button).disabled = not (s and s.resumable)
        done = state == "done" and bool(s and s.out and Path(s.out).is_dir())
        self.query_one("#ft-use", Button).disabled = not done
        self.query_one("#ft-compare", Button).disabled = not done

    # -- the form ---------------------------------------------------------------------
    def form_args(self) -> TrainArgs:
        def val(id_: str) -> str:
            return self.query_one(f"#{id_}", Input).value.strip()

        def num(id_: str, kind: type, default: Any) -> Any:
            text = val(id_)
            try:
                return kind(text) if text else default
            except ValueError as exc:
                raise SlmChatError(t("ft.not_number", field=id_[3:], text=repr(text))) from exc

        if not val("ft-file"):
            raise SlmChatError(t("ft.choose_file"))
        method = self.query_one("#ft-method", Select).value
        return TrainArgs(
            data=str(Path(val("ft-file")).expanduser()), model=val("ft-model") or "default",
            method=str(method),  # type: ignore[arg-type]
            max_steps=num("ft-steps", int, None), epochs=num("ft-epochs", float, 1.0),
            lr=num("ft-lr", float, None), block_size=num("ft-block", int, None),
            batch_size=num("ft-batch", int, 4), lora_r=num("ft-rank", int, 8),
        ).validate()

    def _args_or_notify(self) -> TrainArgs | None:
        try:
            return self.form_args()
        except SlmChatError as exc:
            self.notify(str(exc), severity="error")
            return None

    @on(Button.Pressed, "#ft-preview-btn")
    def action_preview(self) -> None:
        args = self._args_or_notify()
        if args is not None:
            self.query_one("#ft-preview", Static).update(t("ft.reading"))
            self._preview_worker(args)

    @work(thread=True, exclusive=True, group="ft-preview")
    def _preview_worker(self, args: TrainArgs) -> None:
        from slmchat.engine.finetune.plan import preview

        try:
            pv = preview(args, probe_steps=0)
            self.post_message(PreviewText("\n".join(
                [*pv.lines(), t("ft.measuring")])))
            pv = preview(args, probe_steps=2)
            self.post_message(PreviewText("\n".join(pv.lines())))
        except SlmChatError as exc:
            self.post_message(PreviewText(f"[red]{exc}[/]"))
        except Exception as exc:  # keep the panel alive whatever the probe hits
            self.post_message(PreviewText(f"[red]{type(exc).__name__}: {exc}[/]"))

    @on(Button.Pressed, "#ft-start")
    def action_start(self) -> None:
        args = self._args_or_notify()
        if args is not None:
            self.query_one("#ft-preview", Static).update(t("ft.checking"))
            self._start_worker(args)

    @work(thread=True, exclusive=True, group="ft-start")
    def _start_worker(self, args: TrainArgs) -> None:
        from slmchat.engine.finetune.plan import prepare_run, preview

        try:
            pv = preview(args, probe_steps=0)  # bad data fails here, before any process
            prepared = prepare_run(args, self._new_run_dir(args))
            proc = runs.spawn(prepared)
        except SlmChatError as exc:
            self.post_message(PreviewText(f"[red]{exc}[/]"))
            return
        self.post_message(PreviewText("\n".join(pv.lines())))
        self.post_message(RunSpawned(prepared, proc))

    def on_preview_text(self, message: PreviewText) -> None:
        self.query_one("#ft-preview", Static).update(message.text)

    def on_run_spawned(self, message: RunSpawned) -> None:
        self._procs.append(message.proc)  # the process list changes on the UI thread only
        self.select_run(message.run_dir)
        self.refresh_runs()

    def _new_run_dir(self, args: TrainArgs) -> Path | None:
        if self.runs_root is None:
            return None
        return runs.new_run_dir(Path(args.data).stem, self.runs_root)

    @on(Button.Pressed, "#ft-browse")
    def browse(self) -> None:
        from slmchat.tui.screens.file_pick import FilePickScreen

        def chosen(path: str | None) -> None:
            if path:
                self.query_one("#ft-file", Input).value = path

        current = Path(self.query_one("#ft-file", Input).value or Path.cwd()).expanduser()
        start = current if current.is_dir() else current.parent
        self.app.push_screen(FilePickScreen(start if start.is_dir() else Path.cwd()), chosen)

    # -- run actions ------------------------------------------------------------------
    @on(Button.Pressed, "#ft-cancel")
    def cancel_run(self) -> None:
        if self.selected is not None:
            runs.request_cancel(self.selected)
            self.notify(t("ft.stopping"))

    @on(Button.Pressed, "#ft-resume")
    def resume_run(self) -> None:
        if self.selected is not None and self.summary and self.summary.resumable:
            self._procs.append(runs.spawn(self.selected))
            self.refresh_runs()

    @on(Button.Pressed, "#ft-use")
    def action_use_model(self) -> None:
        if self.summary and self.summary.state == "done" and self.summary.out:
            self.post_message(self.UseModel(ModelSpec(path=self.summary.out)))
        else:
            self.notify(t("ft.choose_run"), severity="warning")

    @on(Button.Pressed, "#ft-compare")
    def action_compare(self) -> None:
        s = self.summary
        if not (s and s.state == "done" and s.out):
            self.notify(t("ft.choose_run"), severity="warning")
            return
        self.post_message(CompareRunRequested(s, self.engine))

    @on(Button.Pressed, "#ft-close")
    def action_close(self) -> None:
        self.post_message(self.Closed())  # runs keep going in their own processes


class FinetuneScreen(Screen[ModelSpec | None]):
    """The fine-tune panel at full width (narrow terminals): dismisses with the spec of
    a finished run's model ("Use model") or None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="finetune_screen.close")]

    def __init__(self, engine: Any = None, settings: Any = None,
                 runs_root: Path | None = None, data_file: str | None = None) -> None:
        super().__init__()
        localize_bindings(self)
        self.panel = FinetunePanel(engine, settings, runs_root, data_file=data_file)

    def compose(self) -> ComposeResult:
        yield self.panel
        yield FittedFooter()

    def action_close(self) -> None:
        self.dismiss(None)

    def on_finetune_panel_use_model(self, message: FinetunePanel.UseModel) -> None:
        message.stop()
        self.dismiss(message.spec)

    def on_finetune_panel_closed(self, message: FinetunePanel.Closed) -> None:
        message.stop()
        self.dismiss(None)
