"""Curating chats into training data: mark replies good or bad, keep an edited
"preferred" reply, and export conversations as chat JSONL for ``slmchat finetune``.

Marks live in the reply's provenance JSON (``curation.rating``), so no schema step is
needed, a deleted message takes its mark with it, and the chat view reads the mark from
the message it already has. An edited reply replaces the message's text, so the chat
shows and continues from the answer the user wanted; the model's original text is kept
in the provenance too (``curation.original``).

The export writes one row per conversation in the ``messages`` format the fine-tune
reads, cut after the last reply to learn from. Replies not to learn from stay in the
row as context with ``"weight": 0`` (OpenAI's chat fine-tuning convention, honoured by
``--mask-prompt``), so the model learns the good answers in the context they were given.
A question answered from attached files is exported as the model saw it, with the
retrieved passages (``export-chats --no-passages`` leaves them out).

``export-chats --pairs`` turns the same marks into preference pairs for DPO: an edited
reply against the model's own text, and a reply marked good against a regeneration of the
same turn marked bad (``preference_pairs``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from slmchat.engine.generation.toolcalls import stored_call_turns
from slmchat.engine.store.provenance import Provenance
from slmchat.engine.store.store import Store, StoredMessage
from slmchat.errors import InvalidParameterError

Rating = Literal["good", "bad"]
RATINGS: tuple[str, ...] = ("good", "bad")


def rating_of(msg: StoredMessage) -> str | None:
    prov = msg.prov
    return prov.rating if prov is not None else None


def set_rating(store: Store, msg_id: int, rating: Rating | None) -> StoredMessage:
    """Mark an assistant reply good or bad; ``None`` clears the mark."""
    if rating is not None and rating not in RATINGS:
        raise InvalidParameterError(f"rating must be one of {', '.join(RATINGS)}")
    msg = store.get_message(msg_id)
    if msg.role != "assistant":
        raise InvalidParameterError("only the model's replies can be marked")
    if msg.status == "streaming":
        raise InvalidParameterError("wait for the reply to finish before marking it")
    _curate(store, msg, rating=rating, marked_at=time.time())
    return store.get_message(msg_id)


def _curate(store: Store, msg: StoredMessage, content: str | None = None,
            **changes: Any) -> None:
    """Change the reply's ``curation`` (a None value removes a key); the rest of its
    provenance is written back as it was stored, whatever its version."""
    cur = (msg.prov or Provenance()).with_curation(**changes).curation
    store.update_message(msg.id, content=content,
                         provenance={**(msg.provenance or {}), "curation": cur})


def ratings(store: Store, conv_id: int | None = None) -> dict[int, str]:
    """{message id: rating} for one conversation, or for all."""
    sql = ("SELECT id, json_extract(provenance, '$.curation.rating') AS r FROM messages "
           "WHERE role = 'assistant' AND json_extract(provenance, '$.curation.rating') "
           "IN ('good', 'bad')")
    params: tuple[Any, ...] = ()
    if conv_id is not None:
        sql += " AND conversation_id = ?"
        params = (conv_id,)
    with store._lock:  # the store's own connection and lock
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
    original = original_text(msg)
    _curate(store, msg, content=text, original=msg.content if original is None else original,
            edited_at=time.time())
    return set_rating(store, msg_id, "good")


def original_text(msg: StoredMessage) -> str | None:
    """The model's own text of an edited reply, or None if it was never edited."""
    return msg.prov.original if msg.prov is not None else None


def marked_conversations(store: Store) -> list[int]:
    """Conversations with at least one reply marked good (edited replies count)."""
    with store._lock:
        rows = store._db.execute(
            "SELECT DISTINCT conversation_id FROM messages WHERE role = 'assistant' AND "
            "json_extract(provenance, '$.curation.rating') = 'good' "
            "ORDER BY conversation_id").fetchall()
    return [int(r[0]) for r in rows]


# (a reply's provenance["retrieval"], the user's question) -> the question as the model
# saw it, passages in, or None (slmchat.engine.retrieval.context.grounded_question)
Passages = Callable[[dict[str, Any], str], "str | None"]


@dataclass(frozen=True)
class ExportReport:
    path: Path
    rows: int
    trained_replies: int
    context_replies: int
    conversations: int
    grounded: int = 0  # questions exported with the passages their reply was given
    ungrounded: int = 0  # grounded replies whose passages could not be recovered
    passages_left_out: bool = False


def grounded_text(reply: StoredMessage | None, question: str,
                  passages: Passages | None) -> tuple[str, bool | None]:
    """(the question as the model saw it, True) for a reply grounded on attached files,
    (question, False) when its passages cannot be recovered, (question, None) when the
    reply was not grounded."""
    prov = reply.prov if reply is not None else None
    retrieval = prov.retrieval if prov is not None else None
    if retrieval is None or not retrieval.get("chunks"):
        return question, None
    seen = retrieval.get("user_message")
    if isinstance(seen, str) and seen.strip():
        return seen, True
    rebuilt = passages(retrieval, question) if passages is not None else None
    return (rebuilt, True) if rebuilt else (question, False)


def training_row(store: Store, conv_id: int, marks: dict[int, str], learn_unmarked: bool,
                 passages: Passages | None = None, with_passages: bool = True,
                 counts: dict[str, int] | None = None,
                 ) -> tuple[dict[str, Any] | None, int, int]:
    """(row or None, replies learned, replies kept as context) for one conversation.

    A question whose reply was grounded on attached files is exported as the model saw
    it, with the passages (``with_passages``), so a fine-tune learns the answer together
    with the text it came from, not the facts alone; ``counts`` gets "grounded" and
    "ungrounded" (passages no longer recoverable)."""
    conv = store.get_conversation(conv_id)
    msgs: list[dict[str, Any]] = []
    system = conv.settings.get("system_prompt")
    if isinstance(system, str) and system.strip():
        msgs.append({"role": "system", "content": system})
    last_learned = -1
    learned = context = 0
    shown = store.messages(conv_id)
    grounding: list[tuple[int, bool]] = []  # (row index, passages found)
    for i, m in enumerate(shown):
        if m.role == "assistant" and m.tool_call:  # a tool call and its result: context
            calls = stored_call_turns(m.tool_call)
            msgs += [{"role": c.role, "content": c.content,
                      **({"weight": 0} if c.role == "assistant" else {})} for c in calls]
            continue
        if m.role == "system" or not m.content.strip() or m.status in ("error", "streaming"):
            continue
        row: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.role == "user" and with_passages:
            reply = shown[i + 1] if i + 1 < len(shown) and shown[i + 1].role == "assistant" \
                else None
            row["content"], found = grounded_text(reply, m.content, passages)
            if found is not None:
                grounding.append((len(msgs), found))
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
    if counts is not None:
        for at, found in grounding:
            if at <= last_learned:
                key = "grounded" if found else "ungrounded"
                counts[key] = counts.get(key, 0) + 1
    return {"messages": kept}, learned, context


def export_training(store: Store, out: Path, conv_ids: Iterable[int] | None = None, *,
                    passages: Passages | None = None,
                    with_passages: bool = True) -> ExportReport:
    """Write chat JSONL for ``slmchat finetune``.

    ``conv_ids`` given: those conversations, learning every complete reply not marked bad.
    None: every conversation with a reply marked good, learning only the good ones.
    Grounded questions carry their passages unless ``with_passages`` is False
    (``passages`` rebuilds them for replies that did not record the text).
    """
    from slmchat.engine.fsutil import write_private

    explicit = conv_ids is not None
    ids = list(conv_ids) if conv_ids is not None else marked_conversations(store)
    rows: list[dict[str, Any]] = []
    learned = context = 0
    counts: dict[str, int] = {}
    for conv_id in ids:
        try:
            row, n_learn, n_context = training_row(
                store, conv_id, ratings(store, conv_id), learn_unmarked=explicit,
                passages=passages, with_passages=with_passages, counts=counts)
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
    return ExportReport(out, len(rows), learned, context, len(ids),
                        grounded=counts.get("grounded", 0),
                        ungrounded=counts.get("ungrounded", 0),
                        passages_left_out=not with_passages)


# --- preference pairs (DPO) -----------------------------------------------------------

@dataclass(frozen=True)
class PairsReport:
    path: Path
    pairs: int
    from_edits: int  # an edited reply (chosen) against the model's own text (rejected)
    from_branches: int  # a reply marked good against a sibling reply marked bad
    conversations: int


def _path_to(by_id: dict[int, StoredMessage], msg: StoredMessage) -> list[StoredMessage]:
    """The messages before ``msg`` on its branch, oldest first."""
    path: list[StoredMessage] = []
    parent = msg.parent_id
    while parent is not None and parent in by_id and len(path) <= len(by_id):
        path.append(by_id[parent])
        parent = by_id[parent].parent_id
    path.reverse()
    return path


def _prompt_rows(store: Store, conv_id: int, before: list[StoredMessage],
                 reply: StoredMessage, passages: Passages | None,
                 with_passages: bool) -> list[dict[str, str]]:
    conv = store.get_conversation(conv_id)
    rows: list[dict[str, str]] = []
    system = conv.settings.get("system_prompt")
    if isinstance(system, str) and system.strip():
        rows.append({"role": "system", "content": system})
    for i, m in enumerate(before):
        if m.role == "system" or not m.content.strip() or m.status in ("error", "streaming"):
            continue
        content = m.content
        if m.role == "user" and with_passages:
            nxt = before[i + 1] if i + 1 < len(before) else reply
            content, _ = grounded_text(nxt if nxt.role == "assistant" else None, content,
                                       passages)
        rows.append({"role": m.role, "content": content})
    return rows


def preference_pairs(store: Store, passages: Passages | None = None,
                     with_passages: bool = True) -> tuple[list[dict[str, Any]], int, int, int]:
    """(rows, pairs from edits, pairs from marked branches, conversations) over the store.

    A pair is what the user's marks mean: an edited reply is preferred to the model's own
    text; a reply marked good is preferred to a sibling reply (a regeneration of the same
    turn) marked bad. Each row is in TRL's conversational preference format."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    edits = branches = 0
    convs: set[int] = set()
    for conv in store.list_conversations():
        msgs = store.all_messages(conv.id)
        by_id = {m.id: m for m in msgs}
        for m in msgs:
            if m.role != "assistant" or m.status in ("error", "streaming") or not m.content.strip():
                continue
            rejected: list[tuple[str, str]] = []
            original = original_text(m)
            if original is not None and original.strip() and original != m.content:
                rejected.append(("edit", original))
            if rating_of(m) == "good":
                rejected += [("branch", s.content) for s in msgs
                             if s.parent_id == m.parent_id and s.id != m.id
                             and s.role == "assistant" and rating_of(s) == "bad"
                             and s.content.strip() and s.content != m.content]
            if not rejected:
                continue
            prompt = _prompt_rows(store, conv.id, _path_to(by_id, m), m, passages,
                                  with_passages)
            if not prompt or prompt[-1]["role"] == "assistant":
                continue
            for kind, text in rejected:
                row = {"prompt": prompt, "chosen": [{"role": "assistant", "content": m.content}],
                       "rejected": [{"role": "assistant", "content": text}]}
                key = json.dumps(row, sort_keys=True)
                if key in seen:
                    continue
                seen.add(key)
                rows.append(row)
                convs.add(conv.id)
                edits += kind == "edit"
                branches += kind == "branch"
    return rows, edits, branches, len(convs)


def export_pairs(store: Store, out: Path, *, passages: Passages | None = None,
                 with_passages: bool = True) -> PairsReport:
    """Write DPO pairs JSONL for ``slmchat finetune --method dpo``."""
    from slmchat.engine.fsutil import write_private

    rows, edits, branches, convs = preference_pairs(store, passages, with_passages)
    if not rows:
        raise InvalidParameterError(
            "no preference pairs: edit a reply into the one you wanted, or mark a reply good "
            "and another answer to the same message (a regeneration) bad")
    out = Path(out).expanduser()
    write_private(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return PairsReport(out, len(rows), edits, branches, convs)
