"""One line above the prompt: the files attached to this chat and indexing progress.

The bar owns the attached paths and the thread worker that indexes them: ``attach`` and
``detach`` (the chat's ``/attach`` and ``/detach``) change them, index what is new
(progress in the bar) and post ``Changed(paths)``; the chat screen keeps the paths in the
conversation's settings and hands them back with ``set_paths`` when a conversation opens.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Static
from textual.worker import get_current_worker

from slmchat.errors import SlmChatError
from slmchat.i18n import t
from slmchat.tui.messages import IndexFinished, IndexProgressed

if TYPE_CHECKING:
    from slmchat.engine.retrieval.index import DocumentIndex


class AttachmentsBar(Static):
    """Hidden while nothing is attached."""

    paths: reactive[list[str]] = reactive(list, init=False)
    progress: reactive[str] = reactive("", init=False)
    summary: reactive[str] = reactive("", init=False)

    class Changed(Message):
        """The user attached or detached files: ``paths`` are attached now."""

        def __init__(self, paths: list[str]) -> None:
            super().__init__()
            self.paths = paths

    def __init__(self, index: Callable[[], DocumentIndex]) -> None:
        super().__init__("", id="attachments")
        self._index = index  # opens the retrieval index (once: the chat screen keeps it)

    def on_mount(self) -> None:
        self.display = False

    def watch_paths(self) -> None:
        self._draw()

    def watch_progress(self) -> None:
        self._draw()

    def watch_summary(self) -> None:
        self._draw()

    def _draw(self) -> None:
        self.display = bool(self.paths)
        text = Text(t("files.label"), style="bold")
        text.append(", ".join(Path(p).name or p for p in self.paths))
        note = self.progress or self.summary
        if note:
            text.append(f"  {note}", style="italic")
        text.append(t("files.detach_hint"), style="dim")
        self.update(text)

    def set_paths(self, paths: list[str]) -> None:
        """The open conversation's files (no message: nothing changed for it)."""
        self.progress = self.summary = ""
        self.paths = list(paths)

    def _change(self, paths: list[str]) -> None:
        self.set_paths(paths)
        self.post_message(self.Changed(list(paths)))

    def attach(self, paths: list[str]) -> None:
        """``/attach PATH...``: add files or folders and index them."""
        from slmchat.engine.retrieval.index import resolve_roots

        if not paths:
            self.notify(t("files.usage", commands=t("files.commands")), severity="warning")
            return
        try:
            roots = resolve_roots(paths)
        except SlmChatError as exc:
            self.notify(str(exc), title="/attach", severity="error")
            return
        self._change(list(dict.fromkeys([*self.paths, *roots])))
        self.progress = t("files.indexing")
        self._index_worker(roots)

    def detach(self, paths: list[str]) -> None:
        """``/detach [PATH...]``: drop these files, or all of them."""
        if not paths:
            self._change([])
            self.notify(t("files.detached"))
            return
        drop = {str(Path(p).expanduser().resolve()) for p in paths}
        self._change([p for p in self.paths if p not in drop])

    @work(thread=True, group="index")
    def _index_worker(self, roots: list[str]) -> None:
        worker = get_current_worker()

        def progress(p: Any) -> None:
            self.post_message(IndexProgressed(p.files_done, p.files_total, p.bytes_done,
                                              p.bytes_total))

        try:
            report = self._index().index(roots, progress=progress,
                                         cancel=lambda: worker.is_cancelled)
        except Exception as exc:  # a vanished folder, a full disk: say so, keep chatting
            self.post_message(IndexFinished(None, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(IndexFinished(report))

    def on_index_progressed(self, event: IndexProgressed) -> None:
        event.stop()
        pct = 100 * event.bytes_done / max(1, event.bytes_total)
        self.progress = t("files.indexing_progress", done=event.files_done,
                          total=event.files_total, pct=pct)

    def on_index_finished(self, event: IndexFinished) -> None:
        event.stop()
        self.progress = ""
        if event.error:
            self.summary = t("files.index_failed")
            self.notify(event.error, title=t("files.index_failed_title"), severity="error")
            return
        report = event.report
        self.summary = t("files.indexed", chunks=report.chunks, skipped=len(report.skipped))
        if report.skipped:
            listed = "\n".join(f"{Path(s.path).name}: {s.reason}" for s in report.skipped[:5])
            more = (t("files.skipped_more", n=len(report.skipped) - 5)
                    if len(report.skipped) > 5 else "")
            self.notify(f"{listed}{more}", title=t("files.skipped_title", n=len(report.skipped)),
                        severity="warning")
