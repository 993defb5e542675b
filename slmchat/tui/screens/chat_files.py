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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmchat.engine.generation.prompting import ChatMessage, Prompt

if TYPE_CHECKING:
    from slmchat.engine.retrieval.index import DocumentIndex

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


def export_path() -> Path:
    """Where "Export marked" writes the training JSONL."""
    from slmchat.paths import data_dir

    return data_dir() / "exports" / f"chats-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
