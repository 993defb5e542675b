"""Chat with local files and curate replies for training: the chat screen's part of it.

``/attach PATH`` (a file or folder) indexes it in a thread worker (progress in the bar
above the prompt) and from then on each question gets the best passages in its prompt;
the reply lists its sources, and pressing one opens the passage. ``/detach`` drops the
files. Replies can be marked good or bad, edited into the preferred answer, and the
marked conversations exported as training JSONL and opened in the fine-tune panel.

``FilesAndTraining`` sits between ConversationScreen and ChatScreen, so the chat
screen itself only calls ``handle_command`` and ``with_files``.
"""

from __future__ import annotations

import contextlib
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.worker import get_current_worker

from slmchat.engine.generation.prompting import ChatMessage
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.store.store import StoreWriteError
from slmchat.errors import SlmChatError
from slmchat.i18n import t
from slmchat.tui.messages import IndexFinished, IndexProgressed
from slmchat.tui.screens.conversations import ConversationScreen
from slmchat.tui.widgets.attachments_bar import AttachmentsBar
from slmchat.tui.widgets.citations import Citations
from slmchat.tui.widgets.message_view import MessageView

if TYPE_CHECKING:
    from slmchat.engine.retrieval.index import DocumentIndex


class FilesAndTraining(ConversationScreen):
    _doc_index: DocumentIndex | None = None

    # --- attached files -------------------------------------------------------------

    @property
    def attachments(self) -> list[str]:
        value = self.chat_settings.get("attachments") or []
        return [str(p) for p in value] if isinstance(value, list) else []

    def doc_index(self) -> DocumentIndex:
        if self._doc_index is None:
            from slmchat.engine.retrieval.index import DocumentIndex

            self._doc_index = DocumentIndex.open_default()
        return self._doc_index

    def _set_attachments(self, paths: list[str]) -> None:
        self.chat_settings = {**self.chat_settings, "attachments": paths}
        if not paths:
            self.chat_settings.pop("attachments")
        if self.conv is not None:
            try:
                self.store.set_conversation_settings(self.conv.id, self.chat_settings)
            except StoreWriteError as exc:  # used in this session; saved when they change
                self.not_saved(exc, "chat.settings_not_saved")
        self.query_one(AttachmentsBar).show(paths, progress="", summary="")

    def file_settings(self) -> dict[str, Any]:
        """The part of the chat settings the settings panel does not edit."""
        return {"attachments": self.attachments} if self.attachments else {}

    async def open_conversation(self, conv_id: int) -> None:
        await super().open_conversation(conv_id)
        self.show_attachments()

    async def action_new_chat(self) -> None:
        await super().action_new_chat()
        self.show_attachments()

    def show_attachments(self) -> None:
        """Refresh the bar for the open conversation (called when one is opened)."""
        self.query_one(AttachmentsBar).show(self.attachments, progress="", summary="")

    async def handle_command(self, text: str) -> bool:
        """``/attach`` and ``/detach``; True when ``text`` was one of them."""
        word = text.split(maxsplit=1)[0] if text.strip() else ""
        if word not in ("/attach", "/detach"):
            return False
        try:
            args = shlex.split(text)[1:]
        except ValueError as exc:
            self.notify(f"{word}: {exc}", severity="error")
            return True
        if word == "/attach":
            self.attach(args)
        else:
            self.detach(args)
        return True

    def attach(self, paths: list[str]) -> None:
        from slmchat.engine.retrieval.index import resolve_roots

        if not paths:
            self.notify(t("files.usage", commands=t("files.commands")), severity="warning")
            return
        try:
            roots = resolve_roots(paths)
        except SlmChatError as exc:
            self.notify(str(exc), title="/attach", severity="error")
            return
        self._set_attachments(list(dict.fromkeys([*self.attachments, *roots])))
        self.query_one(AttachmentsBar).show(self.attachments, progress=t("files.indexing"))
        self._index_worker(roots)

    def detach(self, paths: list[str]) -> None:
        if not paths:
            self._set_attachments([])
            self.notify(t("files.detached"))
            return
        drop = {str(Path(p).expanduser().resolve()) for p in paths}
        self._set_attachments([p for p in self.attachments if p not in drop])

    @work(thread=True, group="index")
    def _index_worker(self, roots: list[str]) -> None:
        worker = get_current_worker()

        def progress(p: Any) -> None:
            self.post_message(IndexProgressed(p.files_done, p.files_total, p.bytes_done,
                                              p.bytes_total))

        try:
            report = self.doc_index().index(roots, progress=progress,
                                            cancel=lambda: worker.is_cancelled)
        except Exception as exc:  # a vanished folder, a full disk: say so, keep chatting
            self.post_message(IndexFinished(None, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(IndexFinished(report))

    def on_index_progressed(self, event: IndexProgressed) -> None:
        pct = 100 * event.bytes_done / max(1, event.bytes_total)
        self.query_one(AttachmentsBar).show(
            self.attachments, progress=t("files.indexing_progress", done=event.files_done,
                                         total=event.files_total, pct=pct))

    def on_index_finished(self, event: IndexFinished) -> None:
        bar = self.query_one(AttachmentsBar)
        if event.error:
            bar.show(self.attachments, progress="", summary=t("files.index_failed"))
            self.notify(event.error, title=t("files.index_failed_title"), severity="error")
            return
        report = event.report
        bar.show(self.attachments, progress="",
                 summary=t("files.indexed", chunks=report.chunks, skipped=len(report.skipped)))
        if report.skipped:
            listed = "\n".join(f"{Path(s.path).name}: {s.reason}" for s in report.skipped[:5])
            more = (t("files.skipped_more", n=len(report.skipped) - 5)
                    if len(report.skipped) > 5 else "")
            self.notify(f"{listed}{more}", title=t("files.skipped_title", n=len(report.skipped)),
                        severity="warning")

    def with_files(self, messages: list[ChatMessage], params: SamplingParams
                   ) -> tuple[list[ChatMessage], dict[str, Any] | None]:
        """The messages with the best passages of the attached files put in, and what goes
        into the reply's provenance (None when no files are attached)."""
        roots = self.attachments
        if not roots:
            return messages, None
        from slmchat.engine.retrieval.context import retrieve

        try:
            aug = retrieve(self.doc_index(), roots, messages,
                           lambda m: self.engine.preview_prompt(m, params), params.max_new_tokens)
        except SlmChatError as exc:
            self.notify(str(exc), title=t("files.not_used_title"), severity="warning")
            return messages, None
        prov = aug.provenance()
        if aug.sources:  # the question as the model saw it, passages in: for the export
            prov["user_message"] = next(
                m.content for m in reversed(aug.messages) if m.role == "user")
        return aug.messages, prov

    def on_citations_open(self, event: Citations.Open) -> None:
        from slmchat.tui.screens.passage import PassageScreen

        chunk_text = None
        chunk_id = event.source.get("chunk_id")
        if isinstance(chunk_id, int):
            hit = self.doc_index().chunk(chunk_id)
            chunk_text = hit.text if hit is not None else None
        self.app.push_screen(PassageScreen(event.source, chunk_text))

    # --- curating replies -----------------------------------------------------------

    def _reply_target(self) -> MessageView | None:
        selected = self.log_view.selected_view
        if selected is not None and selected.role == "assistant" and selected.msg_id:
            return selected
        replies = [v for v in self.log_view.views() if v.role == "assistant" and v.msg_id]
        if not replies:
            self.notify(t("curation.no_reply"), severity="warning")
            return None
        return replies[-1]

    def _mark(self, rating: str | None) -> None:
        from slmchat.engine.store.curation import set_rating

        view = self._reply_target()
        if view is None:
            return
        try:
            msg = set_rating(self.store, view.msg_id, rating)  # type: ignore[arg-type]
        except SlmChatError as exc:
            self.notify(str(exc), severity="warning")
            return
        view.set_status(view.status, msg.provenance)
        self.notify(t(f"curation.rated.{rating}") if rating else t("curation.cleared"))

    def action_mark_good(self) -> None:
        self._mark("good")

    def action_mark_bad(self) -> None:
        self._mark("bad")

    def action_clear_mark(self) -> None:
        self._mark(None)

    def action_edit_reply(self) -> None:
        from slmchat.engine.store.curation import set_preferred
        from slmchat.tui.screens.edit_reply import EditReply

        view = self._reply_target()
        if view is None or self.generating:
            return

        async def done(text: str | None) -> None:
            if text is None or text == view.content:
                return
            try:
                msg = set_preferred(self.store, view.msg_id, text)
            except SlmChatError as exc:
                self.notify(str(exc), severity="error")
                return
            await view.replace_text(msg.content, msg.provenance)
            self.notify(t("curation.saved"))

        self.app.push_screen(EditReply(view.content), done)

    async def action_export_training(self, then_finetune: bool = False) -> None:
        from slmchat.engine.store.curation import export_training
        from slmchat.paths import data_dir

        out = data_dir() / "exports" / f"chats-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
        try:
            report = export_training(self.store, out, passages=self._rebuild_passages)
        except (SlmChatError, OSError) as exc:
            self.notify(str(exc), title=t("train.export_title"), severity="warning")
            return
        self.notify(t("train.exported", conversations=t("train.conversations", n=report.rows),
                      replies=t("train.replies", n=report.trained_replies),
                      path=report.path), title=t("train.exported_title"))
        if then_finetune:
            await self._open_finetune(str(report.path))

    def _rebuild_passages(self, retrieval: dict[str, Any], question: str) -> str | None:
        """A grounded question as the model saw it, for replies written before that was
        recorded: from the passages' chunks, while the index still has them."""
        from slmchat.engine.retrieval.context import grounded_question

        return grounded_question(self.doc_index(), retrieval, question)

    async def action_finetune_marked(self) -> None:
        await self.action_export_training(then_finetune=True)

    async def _open_finetune(self, path: str) -> None:
        from textual.widgets import Input

        await self.app.run_action("finetune")

        def fill() -> None:
            # The panel is not there (or changed): the path was in the notice anyway.
            with contextlib.suppress(Exception):
                self.app.screen.query_one("#ft-file", Input).value = path

        self.app.call_after_refresh(fill)

    def action_focus_prompt_attach(self) -> None:
        self.prompt.set_text("/attach ")
        self.prompt.focus()
