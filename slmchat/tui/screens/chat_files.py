"""Chat with local files, and curate replies for training: the parts without a screen.

``/attach PATH`` (a file or folder) indexes it (widgets/attachments_bar.py: the bar owns
the paths and the index worker) and from then on each question gets the best passages in
its prompt (``with_files``); the reply lists its sources, and pressing one opens the
passage. ``/detach`` drops the files. Replies can be marked good or bad, edited into the
preferred answer, and the marked conversations exported as training JSONL and opened in
the fine-tune panel (the chat screen's actions; ``export_path`` names the file).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from slmchat.engine.generation.prompting import ChatMessage, Prompt
from slmchat.errors import SlmChatError
from slmchat.i18n import t

if TYPE_CHECKING:
    from slmchat.engine.retrieval.index import DocumentIndex
    from slmchat.engine.store.curation import ExportReport
    from slmchat.engine.store.store import Store
    from slmchat.tui.widgets.message_view import MessageView

FILE_COMMANDS = ("/attach", "/detach")


def files_command(text: str) -> tuple[str, list[str]] | None:
    """``(word, args)`` for an ``/attach`` or ``/detach`` line, else None; raises
    ValueError for unbalanced quotes."""
    word = text.split(maxsplit=1)[0] if text.strip() else ""
    if word not in FILE_COMMANDS:
        return None
    return word, shlex.split(text)[1:]


def with_files(index: DocumentIndex, roots: list[str], messages: list[ChatMessage],
               count: Callable[[Sequence[ChatMessage]], Prompt], max_new_tokens: int
               ) -> tuple[list[ChatMessage], dict[str, Any]]:
    """The messages with the best passages of the files under ``roots`` put in, and what
    goes into the reply's provenance; ``count`` builds a prompt to measure it (raises
    SlmChatError)."""
    from slmchat.engine.retrieval.context import retrieve

    aug = retrieve(index, roots, messages, count, max_new_tokens)
    prov = aug.provenance()
    if aug.sources:  # the question as the model saw it, passages in: for the export
        prov["user_message"] = next(
            m.content for m in reversed(aug.messages) if m.role == "user")
    return aug.messages, prov


def mark(store: Store, view: MessageView, rating: str | None) -> str:
    """Mark the reply ``view`` shows good, bad or neither (None); what to say about it
    (raises SlmChatError)."""
    from slmchat.engine.store.curation import set_rating

    msg = set_rating(store, view.msg_id, rating)  # type: ignore[arg-type]
    view.set_status(view.status, msg.provenance)
    return t(f"curation.rated.{rating}") if rating else t("curation.cleared")


def edit_preferred(app: Any, store: Store, view: MessageView) -> None:
    """Edit the reply into the preferred answer (the original is kept for training)."""
    from slmchat.engine.store.curation import set_preferred
    from slmchat.tui.screens.edit_reply import EditReply

    async def done(text: str | None) -> None:
        if text is None or text == view.content:
            return
        try:
            msg = set_preferred(store, view.msg_id, text)
        except SlmChatError as exc:
            app.notify(str(exc), severity="error")
            return
        await view.replace_text(msg.content, msg.provenance)
        app.notify(t("curation.saved"))

    app.push_screen(EditReply(view.content), done)


def export_marked(store: Store, index: Callable[[], DocumentIndex]) -> ExportReport:
    """The marked conversations as training JSONL in the exports folder (raises
    SlmChatError or OSError)."""
    from slmchat.engine.retrieval.context import grounded_question
    from slmchat.engine.store.curation import export_training
    from slmchat.paths import data_dir

    # A grounded question as the model saw it, for replies written before that was
    # recorded: from the passages' chunks, while the index still has them.
    def passages(retrieval: dict[str, Any], question: str) -> str | None:
        return grounded_question(index(), retrieval, question)

    out = data_dir() / "exports" / f"chats-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
    return export_training(store, out, passages=passages)
