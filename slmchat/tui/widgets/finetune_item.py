"""The status-bar item of a running fine-tune: "⟳ fine-tune 12/40 · ETA 2m 10s", and the
watch over the runs folder behind it.

The item reads the run folders every two seconds (its own timer): while one says
"running" and the fine-tune panel is not docked (``panel_open``, set by the chat screen)
it shows the step and ETA; a click opens the panel (so does Ctrl+T). When a run it saw
running stops, it posts ``RunEnded`` (the chat screen announces it and offers the model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import events
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Static

from slmchat.engine.finetune import rundir as runs
from slmchat.fmt import format_duration
from slmchat.i18n import t

WATCH_INTERVAL_S = 2.0


def item_text(step: int, total: int, eta_s: float | None) -> str:
    total_text = f"/{total}" if total else ""
    eta = t("ftitem.eta", eta=format_duration(eta_s)) if eta_s is not None else ""
    return t("ftitem.text", step=step, total=total_text, eta=eta)


class FinetuneItem(Static):
    DEFAULT_CSS = """
    FinetuneItem { width: auto; height: 1; background: $warning 30%; color: $text;
                   display: none; }
    FinetuneItem:hover { background: $warning 50%; }
    """

    # The fine-tune panel is docked beside the chat: it shows the run, the item makes way.
    panel_open: reactive[bool] = reactive(False, init=False)

    class Clicked(Message):
        """Open the fine-tune panel."""

    class RunEnded(Message):
        """A run seen running has stopped (done, failed or stopped): ``summary``."""

        def __init__(self, summary: runs.RunSummary) -> None:
            super().__init__()
            self.summary = summary

    def __init__(self, runs_root: Path | None = None, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.tooltip = t("ftitem.hint")
        self.runs_root = runs_root  # None: the default runs folder (tests pass their own)
        self.run: Any = None  # the RunSummary shown
        self._live: dict[Path, runs.ProgressReader] = {}
        self._rows: dict[Path, dict[str, Any]] = {}

    def on_mount(self) -> None:
        self.set_interval(WATCH_INTERVAL_S, self.poll)
        self.call_after_refresh(self.poll)

    def watch_panel_open(self) -> None:
        self.poll()

    def poll(self) -> None:
        """Re-read the runs folder: show the first running run, announce runs that end."""
        if not self.is_mounted:
            return
        try:
            listed = runs.list_runs(self.runs_root)
        except OSError:
            return
        by_path = {r.path: r for r in listed}
        for path in list(self._live):
            summary = by_path.get(path)
            if summary is None or summary.state != "running":
                del self._live[path]
                self._rows.pop(path, None)
                if summary is not None:
                    self.post_message(self.RunEnded(summary))
        live = [r for r in listed if r.state == "running"]
        for r in live:
            reader = self._live.setdefault(r.path, runs.ProgressReader(r.path))
            for row in reader.read_new():
                self._rows[r.path] = row
        if not live or self.panel_open:
            self.hide()
            return
        run = live[0]
        row = self._rows.get(run.path, {})
        total = run.total_steps or int(row.get("total_steps") or 0)
        eta = row.get("eta_s")
        self.run = run
        self.show_run(run.step, total, float(eta) if eta is not None else None)

    def show_run(self, step: int, total: int, eta_s: float | None) -> None:
        self.update(Text(item_text(step, total, eta_s)))
        self.display = True

    def hide(self) -> None:
        self.display = False

    def on_click(self, event: events.Click) -> None:
        event.stop()
        self.post_message(self.Clicked())
