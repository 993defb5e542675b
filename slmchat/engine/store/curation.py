"""Curating chats into training data: mark replies good or bad, keep an edited
"preferred" reply, and export conversations as chat JSONL for ``slmchat finetune``.

Marks live in their own table, created with ``IF NOT EXISTS`` on first use (no schema
migration step: the table only adds to the database, and deleting a message deletes
its mark through the foreign key). An edited reply replaces the message's text, so the
chat shows and continues from the answer the user wanted; the model's original text is
kept in the message's provenance (``curation.original``).

The export writes one row per conversation in the ``messages`` format the fine-tune
reads, cut after the last reply to learn from. Replies not to learn from stay in the
row as context with ``"weight": 0`` (OpenAI's chat fine-tuning convention, honoured by
``--mask-prompt``), so the model learns the good answers in the context they were given.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from slmchat.engine.store.store import Store, StoredMessage
from slmchat.errors import InvalidParameterError

Rating = Literal["good", "bad"]
RATINGS: tuple[str, ...] = ("good", "bad")

_TABLE = """CREATE TABLE IF NOT EXISTS message_marks (
    message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    rating TEXT CHECK (rating IN ('good', 'bad')),
    updated_at REAL NOT NULL
)"""


def _ensure(store: Store) -> None:
    with store._lock:  # the store's own connection and lock (one writer at a time)
        store._db.execute(_TABLE)


def set_rating(store: Store, msg_id: int, rating: Rating | None) -> None:
    """Mark an assistant reply good or bad; ``None`` clears the mark."""
    if rating is not None and rating not in RATINGS:
        raise InvalidParameterError(f"rating must be one of {', '.join(RATINGS)}")
    msg = store.get_message(msg_id)
    if msg.role != "assistant":
        raise InvalidParameterError("only the model's replies can be marked")
    _ensure(store)
    with store._tx() as db:
        if rating is None:
            db.execute("DELETE FROM message_marks WHERE message_id = ?", (msg_id,))
        else:
            db.execute("INSERT INTO message_marks(message_id, rating, updated_at) "
                       "VALUES (?, ?, ?) ON CONFLICT(message_id) DO UPDATE SET "
                       "rating = excluded.rating, updated_at = excluded.updated_at",
                       (msg_id, rating, time.time()))


def ratings(store: Store, conv_id: int | None = None) -> dict[int, str]:
    """{message id: rating} for one conversation, or for all."""
    _ensure(store)
    sql = "SELECT k.message_id, k.rating FROM message_marks k"
    params: tuple[Any, ...] = ()
    if conv_id is not None:
        sql += " JOIN messages m ON m.id = k.message_id WHERE m.conversation_id = ?"
        params = (conv_id,)
    with store._lock:
        return {int(r[0]): str(r[1]) for r in store._db.execute(sql, params)}


def set_preferred(store: Store, msg_id: int, text: str) -> StoredMessage:
    """Replace a reply with the answer the user wanted; the model's original text is kept
    in provenance (the first original, however often it is edited), and the reply is
    marked good: it is what training should learn."""
    if not text.strip():
        raise InvalidParameterError("the preferred reply is empty")
    msg = store.get_message(msg_id)
    if msg.role != "assistant":
        raise InvalidParameterError("only the model's replies can be edited into a preferred one")
    prov = dict(msg.provenance or {})
    cur = dict(prov.get("curation") or {})
    cur.setdefault("original", msg.content)
    cur["edited_at"] = time.time()
    prov["curation"] = cur
    store.update_message(msg_id, content=text, provenance=prov)
    set_rating(store, msg_id, "good")
    return store.get_message(msg_id)


def original_text(msg: StoredMessage) -> str | None:
    """The model's own text of an edited reply, or None if it was never edited."""
    cur = (msg.provenance or {}).get("curation") or {}
    value = cur.get("original")
    return value if isinstance(value, str) else None


def marked_conversations(store: Store) -> list[int]:
    """Conversations with at least one reply marked good (edited replies count)."""
    _ensure(store)
    with store._lock:
        rows = store._db.execute(
            "SELECT DISTINCT m.conversation_id FROM message_marks k "
            "JOIN messages m ON m.id = k.message_id WHERE k.rating = 'good' "
            "ORDER BY m.conversation_id").fetchall()
    return [int(r[0]) for r in rows]


@dataclass(frozen=True)
class ExportReport:
    path: Path
    rows: int
    trained_replies: int
    context_replies: int
    conversations: int


def training_row(store: Store, conv_id: int, marks: dict[int, str],
                 learn_unmarked: bool) -> tuple[dict[str, Any] | None, int, int]:
    """(row or None, replies learned, replies kept as context) for one conversation."""
    conv = store.get_conversation(conv_id)
    msgs: list[dict[str, Any]] = []
    system = conv.settings.get("system_prompt")
    if isinstance(system, str) and system.strip():
        msgs.append({"role": "system", "content": system})
    last_learned = -1
    learned = context = 0
    for m in store.messages(conv_id):
        if m.role == "system" or not m.content.strip() or m.status in ("error", "streaming"):
            continue
        row: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.role == "assistant":
            mark = marks.get(m.id)
            complete = m.status == "done"
            learn = mark == "good" or (learn_unmarked and mark is None and complete)
            if learn:
                learned += 1
                last_learned = len(msgs)
            else:
                row["weight"] = 0
                context += 1
        msgs.append(row)
    if last_learned < 0:
        return None, 0, 0
    kept = msgs[:last_learned + 1]
    context = sum(1 for r in kept if r.get("weight") == 0)
    return {"messages": kept}, learned, context


def export_training(store: Store, out: Path, conv_ids: Iterable[int] | None = None) -> ExportReport:
    """Write chat JSONL for ``slmchat finetune``.

    ``conv_ids`` given: those conversations, learning every complete reply not marked bad.
    None: every conversation with a reply marked good, learning only the good ones.
    """
    from slmchat.engine.fsutil import write_private

    explicit = conv_ids is not None
    ids = list(conv_ids) if conv_ids is not None else marked_conversations(store)
    rows: list[dict[str, Any]] = []
    learned = context = 0
    for conv_id in ids:
        try:
            row, n_learn, n_context = training_row(store, conv_id, ratings(store, conv_id),
                                                   learn_unmarked=explicit)
        except KeyError:
            raise InvalidParameterError(f"no conversation {conv_id}") from None
        if row is not None:
            rows.append(row)
            learned += n_learn
            context += n_context
    if not rows:
        raise InvalidParameterError(
            "nothing to export: mark a reply good (or edit one) first"
            if not explicit else "nothing to export: those conversations have no replies to "
            "learn from")
    out = Path(out).expanduser()
    write_private(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return ExportReport(out, len(rows), learned, context, len(ids))
