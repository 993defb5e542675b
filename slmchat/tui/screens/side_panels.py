"""The chat screen's docked tool panels and what it says when a fine-tune run ends.

From ``DOCK_MIN_WIDTH`` columns the model and fine-tune panels open in the dock at the
right of the chat (widgets/side_panel.py), and the chat stays usable beside them; below
it the app shows them at full width, as screens. At most one side panel is open: the
chat settings panel and a docked panel close each other (the chat screen does that).

While a fine-tune runs and its panel is not docked, a status-bar item shows its step
and ETA (widgets/finetune_item.py watches the run folders); when a run it saw running
ends, the chat screen notifies and offers the model above the prompt ("Use model",
"Compare") with the words from ``run_end_notice``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmchat.engine.finetune import rundir as runs
from slmchat.i18n import has, t

if TYPE_CHECKING:
    from textual.widget import Widget

    from slmchat.engine.model.discovery import ModelEntry
    from slmchat.engine.session import EngineLike

DOCK_MIN_WIDTH = 110  # below this a panel takes the whole screen
SIDEBAR_MIN_WIDTH = 150  # below this the conversation list makes way for a docked panel


def build_panel(kind: str, engine: EngineLike, settings: Any,
                discover_fn: Callable[[], list[ModelEntry]] | None,
                runs_root: Path | None, data_file: str | None = None) -> Widget:
    """The ``kind`` panel ("models" or "finetune") to dock beside the chat (imported on
    first use: the first frame must not wait for them)."""
    if kind == "models":
        from slmchat.tui.screens.models import ModelsPanel

        return ModelsPanel(engine, settings, discover_fn=discover_fn, docked=True)
    from slmchat.tui.screens.finetune import FinetunePanel

    return FinetunePanel(engine, settings, runs_root=runs_root, docked=True,
                         data_file=data_file)


def run_end_notice(summary: runs.RunSummary) -> tuple[str, bool]:
    """What to say when a run ends, and whether it made a model to offer."""
    if summary.state == "done" and summary.out:
        after = summary.metrics.get("perplexity_after")
        before = summary.metrics.get("perplexity_before")
        tokens = summary.data_stats.get("eval_tokens")
        # a run from before the held-out end was measured in tokens: the plain figure
        ppl = ("" if before is None or after is None
               else t("ft.done_ppl_plain", before=before, after=after) if tokens is None
               else t("ft.done_ppl", before=before, after=after, tokens=f"{tokens:,}"))
        return t("ft.done", name=summary.name, ppl=ppl), True
    state = t(f"ft.state.{summary.state}") if has(f"ft.state.{summary.state}") \
        else summary.state
    return t("ft.ended", name=summary.name, state=state,
             message=summary.message or t("ft.no_message")), False
