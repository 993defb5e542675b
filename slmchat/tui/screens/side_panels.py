"""The chat screen's docked tool panels and the fine-tune watch.

From ``DOCK_MIN_WIDTH`` columns the model and fine-tune panels open in the dock at the
right of the chat (widgets/side_panel.py), and the chat stays usable beside them; below
it the app shows them at full width, as screens. At most one side panel is open: the
chat settings panel and a docked panel close each other.

While a fine-tune runs and its panel is not docked, a status-bar item shows its step
and ETA (read from the run folder every two seconds); when a run the screen saw running
ends, a notification and an offer above the prompt ("Use model", "Compare") appear.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import events
from textual.widget import Widget
from textual.widgets import Input

from slmchat.engine.finetune import rundir as runs
from slmchat.engine.model.spec import ModelSpec
from slmchat.i18n import has, t
from slmchat.tui.screens.conversations import ConversationScreen
from slmchat.tui.widgets.finetune_item import FinetuneItem
from slmchat.tui.widgets.offer_bar import OfferBar
from slmchat.tui.widgets.settings_panel import SettingsPanel
from slmchat.tui.widgets.side_panel import SidePanel
from slmchat.tui.widgets.sidebar import ConversationSidebar

DOCK_MIN_WIDTH = 110  # below this a panel takes the whole screen
SIDEBAR_MIN_WIDTH = 150  # below this the conversation list makes way for a docked panel
WATCH_INTERVAL_S = 2.0



class PanelActions(ConversationScreen):
    """Docking, closing and resizing the side panel; watching fine-tune runs."""

    panel_width = 64  # the app sets the remembered width before mounting
    runs_root: Path | None = None  # tests point this at a folder of their own

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sidebar_before_panel: bool | None = None
        self._ft_live: dict[Path, runs.ProgressReader] = {}
        self._ft_rows: dict[Path, dict[str, Any]] = {}

    @property
    def side(self) -> SidePanel:
        return self.query_one(SidePanel)

    @property
    def offers(self) -> OfferBar:
        return self.query_one(OfferBar)

    def on_mount(self) -> None:
        self.side.panel_width = self.panel_width
        self.set_interval(WATCH_INTERVAL_S, self.watch_finetunes)
        self.call_after_refresh(self.watch_finetunes)

    # --- docking ---

    def can_dock(self) -> bool:
        return self.size.width >= DOCK_MIN_WIDTH

    def _build(self, kind: str) -> Widget:
        settings = getattr(self.app, "settings", None)
        if kind == "models":
            from slmchat.tui.screens.models import ModelsPanel

            discover_fn = getattr(self.app, "discover_fn", None)
            return ModelsPanel(self.engine, settings, discover_fn=discover_fn, docked=True)
        from slmchat.tui.screens.finetune import FinetunePanel

        return FinetunePanel(self.engine, settings, runs_root=self.runs_root, docked=True)

    async def toggle_panel(self, kind: str) -> None:
        """Open ``kind`` docked and focus it; pressed again, the key moves the focus
        between the panel and the prompt (the panel stays: a fine-tune goes on in view
        while you chat). Esc in the panel closes it."""
        side = self.side
        if side.kind == kind:
            if side.has_focus_within:
                self.prompt.focus()
            elif side.panel is not None:
                self._focus_panel(side.panel)
            return
        settings = self.query_one(SettingsPanel)
        if settings.display:
            self._close_settings()
        sidebar = self.query_one(ConversationSidebar)
        if self._sidebar_before_panel is None:
            self._sidebar_before_panel = sidebar.display
        sidebar.display = self._sidebar_before_panel and self.size.width >= SIDEBAR_MIN_WIDTH
        panel = self._build(kind)
        await side.open(kind, panel)
        self.watch_finetunes()
        self.call_after_refresh(self._focus_panel, panel)

    def _focus_panel(self, panel: Widget) -> None:
        first = next(iter(panel.query(Input)), None)
        if first is not None:
            first.focus()

    def close_panel(self) -> None:
        if self.side.kind is None:
            return
        self.side.close()
        if self._sidebar_before_panel is not None:
            self.query_one(ConversationSidebar).display = self._sidebar_before_panel
            self._sidebar_before_panel = None
        self.prompt.focus()
        self.watch_finetunes()

    def _close_settings(self) -> None:
        """The settings panel's close (chat.py)."""

    def on_resize(self, event: events.Resize) -> None:
        side = self.side
        if side.kind is not None:
            if self.can_dock():
                side.fit(self.size.width)
            else:  # too narrow to share: the panel goes on at full width
                kind = side.kind
                self.close_panel()
                self.call_later(self.app.run_action, kind)

    def on_side_panel_resized(self, event: SidePanel.Resized) -> None:
        remember = getattr(self.app, "remember_panel_width", None)
        if remember is not None:
            remember(event.width)

    # --- what the panels ask for ---

    def _load(self, spec: ModelSpec) -> None:
        load = getattr(self.app, "load_model", None)
        if load is not None:
            load(spec)

    def on_models_panel_chosen(self, event: Any) -> None:
        event.stop()
        self.close_panel()
        self._load(event.spec)

    def on_models_panel_closed(self, event: Any) -> None:
        event.stop()
        self.close_panel()

    def on_finetune_panel_use_model(self, event: Any) -> None:
        event.stop()
        self.close_panel()
        self._load(event.spec)

    def on_finetune_panel_closed(self, event: Any) -> None:
        event.stop()
        self.close_panel()

    # --- the fine-tune watch ---

    def watch_finetunes(self) -> None:
        """Re-read the runs folder: update the status-bar item, announce runs that end."""
        if not self.is_mounted:
            return
        try:
            listed = runs.list_runs(self.runs_root)
        except OSError:
            return
        by_path = {r.path: r for r in listed}
        for path in list(self._ft_live):
            summary = by_path.get(path)
            if summary is None or summary.state != "running":
                del self._ft_live[path]
                self._ft_rows.pop(path, None)
                if summary is not None:
                    self.call_later(self.announce_end, summary)
        live = [r for r in listed if r.state == "running"]
        for r in live:
            reader = self._ft_live.setdefault(r.path, runs.ProgressReader(r.path))
            for row in reader.read_new():
                self._ft_rows[r.path] = row
        item = self.query_one(FinetuneItem)
        if not live or self.side.kind == "finetune":
            item.hide()
            return
        run = live[0]
        row = self._ft_rows.get(run.path, {})
        total = run.total_steps or int(row.get("total_steps") or 0)
        eta = row.get("eta_s")
        item.run = run
        item.show_run(run.step, total, float(eta) if eta is not None else None)

    async def announce_end(self, summary: runs.RunSummary) -> None:
        if summary.state == "done" and summary.out:
            after = summary.metrics.get("perplexity_after")
            before = summary.metrics.get("perplexity_before")
            tokens = summary.data_stats.get("eval_tokens")
            # a run from before the held-out end was measured in tokens: the plain figure
            ppl = ("" if before is None or after is None
                   else t("ft.done_ppl_plain", before=before, after=after) if tokens is None
                   else t("ft.done_ppl", before=before, after=after, tokens=f"{tokens:,}"))
            text = t("ft.done", name=summary.name, ppl=ppl)
            self.notify(text, title=t("ft.done_title"), timeout=15)
            await self.offers.offer("finetune", text,
                                    [(t("ft.use"), "use"), (t("ft.compare"), "compare")],
                                    summary)
        else:
            self.notify(t("ft.ended", name=summary.name, state=t(f"ft.state.{summary.state}")
                          if has(f"ft.state.{summary.state}") else summary.state,
                          message=summary.message or t("ft.no_message")),
                        severity="error", timeout=20)

    async def on_finetune_item_clicked(self, event: FinetuneItem.Clicked) -> None:
        event.stop()
        await self.app.run_action("finetune")

    async def on_offer_bar_chosen(self, event: OfferBar.Chosen) -> None:
        if event.kind != "finetune":
            return
        event.stop()
        summary: runs.RunSummary = event.payload
        if event.action == "use":
            self._load(ModelSpec(path=summary.out))
        elif event.action == "compare":
            from slmchat.tui.screens.finetune import open_compare

            open_compare(self.app, summary)
