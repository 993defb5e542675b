"""Conversations in SQLite: WAL, ``PRAGMA user_version`` migrations, FTS5 search.

Durability rules (see ARCHITECTURE.md, convention 7):

* every write is its own transaction, so the user's message is on disk before the
  model starts answering;
* a streaming reply is written in place by a ``ReplyWriter`` at most every
  ``interval`` seconds, so a kill mid-reply loses at most that much text;
* deleting a conversation really removes the text from the file: ``secure_delete``
  zeroes freed cells, the FTS index is merged (``optimize``) so no segment keeps the
  deleted terms, and the WAL is checkpointed and truncated.

The store is shared by the UI thread and a generation worker thread: one connection
(``check_same_thread=False``) guarded by a lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmchat.engine.store.provenance import Provenance
from slmchat.engine.store.schema import migrate
from slmchat.errors import SlmChatError

DB_NAME = "conversations.db"

# Message status: how the text came to an end (or that it is still being written).
STATUSES = ("done", "length", "stopped", "error", "streaming", "interrupted")


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    created_at: float
    updated_at: float
    settings: dict[str, Any]
    model: dict[str, Any] | None = None  # the model spec it last used (schema v5)


@dataclass(frozen=True)
class ModelChange:
    """A "model changed to …" divider: shown after message ``after_id`` (None: first)."""

    id: int
    conversation_id: int
    after_id: int | None
    label: str
    spec: dict[str, Any]
    created_at: float


@dataclass(frozen=True)
class StoredMessage:
    id: int
    conversation_id: int
    role: str
    content: str
    status: str
    provenance: dict[str, Any] | None
    created_at: float
    parent_id: int | None = None  # the message this one follows (None: a first message)
    reasoning: str = ""  # a reply's reasoning block, apart from its answer (content)
    # An assistant message that called a tool: {"id", "server", "name", "arguments"}, then
    # "consent" ("once", "always" or "denied") and, once it ran, "result" and "is_error".
    tool_call: dict[str, Any] | None = None

    @property
    def prov(self) -> Provenance | None:
        """``provenance`` read as the typed record (any version; None: none stored)."""
        return Provenance.from_dict(self.provenance) if self.provenance is not None else None


def _provenance_json(provenance: Provenance | dict[str, Any] | None) -> str | None:
    if isinstance(provenance, Provenance):
        provenance = provenance.to_dict()
    return json.dumps(provenance) if provenance is not None else None


# add_message's default parent: the last message of the branch on screen.
ACTIVE = object()


@dataclass(frozen=True)
class SearchHit:
    conversation_id: int
    message_id: int
    title: str
    snippet: str


class StoreWriteError(SlmChatError):
    """A write to the conversation store failed (disk full, read-only, I/O error).

    Nothing of the failed write is kept; everything committed before it is."""

    def __init__(self, path: Path, exc: sqlite3.Error) -> None:
        self.disk_full = getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
        reason = "disk full" if self.disk_full else "could not save"
        super().__init__(f"{reason}: nothing was saved to {path} ({exc})")


class StoreOpenError(SlmChatError):
    """The conversation store cannot be opened (a full disk, a read-only folder)."""

    def __init__(self, path: Path, exc: sqlite3.Error) -> None:
        try:
            full = shutil.disk_usage(path.parent).free < (1 << 20)
        except OSError:
            full = False
        hint = "; the disk is full: free some space" if full else ""
        super().__init__(f"cannot open the conversations in {path} ({exc}){hint}")


def _create_private(path: Path) -> None:
    """Create the database file with mode 0600 before SQLite opens it.

    SQLite gives the -wal and -shm files the same permissions as the main file.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)


class Store:
    """All conversation reads and writes. Safe to call from several threads."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        _create_private(self.path)
        self._lock = threading.RLock()
        self._depth = 0  # nested _tx blocks (the outermost one commits)
        # isolation_level=None: autocommit; each statement is durable on return
        # (WAL + synchronous=NORMAL survives a killed process, which is what we need).
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        try:
            for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON",
                           "secure_delete = ON"):
                self._db.execute(f"PRAGMA {pragma}")
            migrate(self._db)
        except sqlite3.OperationalError as exc:  # the -wal/-shm files cannot be made
            self._db.close()
            raise StoreOpenError(self.path, exc) from exc
        # A reply that was streaming when the process died is kept, marked as such (on
        # a full disk next time: opening must not fail on it).
        with contextlib.suppress(sqlite3.OperationalError):
            self._db.execute(
                "UPDATE messages SET status = 'interrupted' WHERE status = 'streaming'")

    @classmethod
    def open_default(cls) -> Store:
        from slmchat.paths import data_dir

        return cls(data_dir() / DB_NAME)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction; a nested block joins the caller's. A failure rolls it all
        back and raises StoreWriteError with SQLite's own reason: on SQLITE_FULL SQLite
        has already rolled back, and a ROLLBACK then ("no transaction is active") must
        not replace the real error."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._db
                finally:
                    self._depth -= 1
                return
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreWriteError(self.path, exc) from exc
            self._depth = 1
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):  # the first error is the one
                        self._db.execute("ROLLBACK")  # worth reporting
                if isinstance(exc, sqlite3.DatabaseError) and not isinstance(
                        exc, sqlite3.IntegrityError):
                    raise StoreWriteError(self.path, exc) from exc
                raise
            finally:
                self._depth = 0

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """Group several writes (create_conversation, add_message, ...) so that they are
        saved together or not at all."""
        return self._tx()

    # --- conversations ---

    @staticmethod
    def _conv(row: sqlite3.Row) -> Conversation:
        model = json.loads(row["model"]) if row["model"] else None
        return Conversation(row["id"], row["title"], row["created_at"], row["updated_at"],
                            json.loads(row["settings"] or "{}"), model)

    def create_conversation(
        self, title: str = "New chat", settings: dict[str, Any] | None = None
    ) -> Conversation:
        now = time.time()
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO conversations(title, created_at, updated_at, settings) "
                "VALUES (?, ?, ?, ?)", (title, now, now, json.dumps(settings or {})),
            )
            conv_id = int(cur.lastrowid or 0)
        return self.get_conversation(conv_id)

    def get_conversation(self, conv_id: int) -> Conversation:
        with self._lock:
            row = self._db.execute("SELECT * FROM conversations WHERE id = ?",
                                   (conv_id,)).fetchone()
        if row is None:
            raise KeyError(f"no conversation {conv_id}")
        return self._conv(row)

    def list_conversations(self) -> list[Conversation]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM conversations ORDER BY updated_at DESC, id DESC").fetchall()
        return [self._conv(r) for r in rows]

    def rename_conversation(self, conv_id: int, title: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conv_id))

    def set_conversation_settings(self, conv_id: int, settings: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute("UPDATE conversations SET settings = ? WHERE id = ?",
                       (json.dumps(settings), conv_id))

    def set_conversation_model(self, conv_id: int, spec: dict[str, Any] | None) -> None:
        with self._tx() as db:
            db.execute("UPDATE conversations SET model = ? WHERE id = ?",
                       (json.dumps(spec) if spec is not None else None, conv_id))

    def add_model_change(self, conv_id: int, label: str, spec: dict[str, Any],
                         after_id: int | None = None) -> ModelChange:
        """Record a model change in ``conv_id`` after message ``after_id`` (default: the
        last message written) and make ``spec`` the conversation's model."""
        now = time.time()
        with self._tx() as db:
            if after_id is None:
                row = db.execute("SELECT MAX(id) FROM messages WHERE conversation_id = ?",
                                 (conv_id,)).fetchone()
                after_id = int(row[0]) if row and row[0] is not None else None
            cur = db.execute(
                "INSERT INTO model_changes(conversation_id, after_id, label, spec, created_at) "
                "VALUES (?, ?, ?, ?, ?)", (conv_id, after_id, label, json.dumps(spec), now))
            db.execute("UPDATE conversations SET model = ? WHERE id = ?",
                       (json.dumps(spec), conv_id))
            change_id = int(cur.lastrowid or 0)
        return ModelChange(change_id, conv_id, after_id, label, spec, now)

    def model_changes(self, conv_id: int) -> list[ModelChange]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM model_changes WHERE conversation_id = ? ORDER BY id",
                (conv_id,)).fetchall()
        return [ModelChange(r["id"], r["conversation_id"], r["after_id"], r["label"],
                            json.loads(r["spec"] or "{}"), r["created_at"]) for r in rows]

    def delete_conversation(self, conv_id: int) -> None:
        """Delete and scrub: no copy of the text stays in the file or the WAL."""
        with self._tx() as db:
            db.execute("DELETE FROM messages WHERE conversation_id = ?", (conv_id,))
            db.execute("DELETE FROM model_changes WHERE conversation_id = ?", (conv_id,))
            db.execute("DELETE FROM conversations WHERE id = ?", (conv_id,))
            # Merge FTS segments so the deleted terms leave the index b-tree.
            db.execute("INSERT INTO messages_fts(messages_fts) VALUES ('optimize')")
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # --- messages ---

    @staticmethod
    def _msg(row: sqlite3.Row) -> StoredMessage:
        prov = json.loads(row["provenance"]) if row["provenance"] else None
        call = row["tool_call"]
        return StoredMessage(row["id"], row["conversation_id"], row["role"], row["content"],
                             row["status"], prov, row["created_at"], row["parent_id"],
                             row["reasoning"], tool_call=json.loads(call) if call else None)

    def all_messages(self, conv_id: int) -> list[StoredMessage]:
        """Every message of the conversation, every branch, in the order written."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM messages WHERE conversation_id = ? ORDER BY id",
                (conv_id,)).fetchall()
        return [self._msg(r) for r in rows]

    def _leaf(self, db: sqlite3.Connection, conv_id: int) -> int | None:
        row = db.execute("SELECT id FROM messages WHERE conversation_id = ? "
                         "ORDER BY active_seq DESC, id DESC LIMIT 1", (conv_id,)).fetchone()
        return int(row[0]) if row else None

    def messages(self, conv_id: int) -> list[StoredMessage]:
        """The branch on screen: from the first message to the active one, in order."""
        with self._lock:
            leaf = self._leaf(self._db, conv_id)
            rows = self._db.execute(
                "SELECT * FROM messages WHERE conversation_id = ? ORDER BY id",
                (conv_id,)).fetchall()
        by_id = {int(r["id"]): r for r in rows}
        path: list[StoredMessage] = []
        while leaf is not None and leaf in by_id and len(path) <= len(by_id):
            row = by_id[leaf]
            path.append(self._msg(row))
            leaf = row["parent_id"]
        path.reverse()
        return path

    def siblings(self, msg_id: int) -> list[StoredMessage]:
        """``msg_id`` and the other messages that follow the same one, oldest first."""
        msg = self.get_message(msg_id)
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM messages WHERE conversation_id = ? AND parent_id IS ? "
                "ORDER BY id", (msg.conversation_id, msg.parent_id)).fetchall()
        return [self._msg(r) for r in rows]

    def branch_positions(self, conv_id: int) -> dict[int, tuple[int, int]]:
        """For each message on the branch on screen that has siblings: (n, of)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, parent_id FROM messages WHERE conversation_id = ? ORDER BY id",
                (conv_id,)).fetchall()
        groups: dict[int | None, list[int]] = {}
        for r in rows:
            groups.setdefault(r["parent_id"], []).append(int(r["id"]))
        out: dict[int, tuple[int, int]] = {}
        for m in self.messages(conv_id):
            group = groups.get(m.parent_id, [])
            if len(group) > 1:
                out[m.id] = (group.index(m.id) + 1, len(group))
        return out

    def _bump(self, db: sqlite3.Connection, conv_id: int, msg_id: int) -> None:
        db.execute("UPDATE messages SET active_seq = (SELECT COALESCE(MAX(active_seq), 0) + 1 "
                   "FROM messages WHERE conversation_id = ?) WHERE id = ?", (conv_id, msg_id))

    def set_active(self, msg_id: int) -> None:
        """End the branch on screen at ``msg_id``: the next message added follows it
        (how a regenerated reply becomes a sibling of the one it replaces)."""
        msg = self.get_message(msg_id)
        with self._tx() as db:
            self._bump(db, msg.conversation_id, msg_id)

    def choose_branch(self, msg_id: int) -> list[StoredMessage]:
        """Show the branch through ``msg_id``, down to the message last active below it.
        Returns the new branch on screen."""
        msg = self.get_message(msg_id)
        with self._lock:
            rows = self._db.execute(
                "SELECT id, parent_id, active_seq FROM messages WHERE conversation_id = ?",
                (msg.conversation_id,)).fetchall()
        children: dict[int, list[Any]] = {}
        for r in rows:
            if r["parent_id"] is not None:
                children.setdefault(int(r["parent_id"]), []).append(r)
        best, best_seq, stack = msg_id, -1, [msg_id]
        seqs = {int(r["id"]): int(r["active_seq"]) for r in rows}
        while stack:
            node = stack.pop()
            if seqs.get(node, -1) > best_seq:
                best, best_seq = node, seqs[node]
            stack.extend(int(c["id"]) for c in children.get(node, ()))
        with self._tx() as db:
            self._bump(db, msg.conversation_id, best)
        return self.messages(msg.conversation_id)

    def get_message(self, msg_id: int) -> StoredMessage:
        with self._lock:
            row = self._db.execute("SELECT * FROM messages WHERE id = ?", (msg_id,)).fetchone()
        if row is None:
            raise KeyError(f"no message {msg_id}")
        return self._msg(row)

    def add_message(
        self, conv_id: int, role: str, content: str, status: str = "done",
        provenance: Provenance | dict[str, Any] | None = None, *,
        parent_id: int | object | None = ACTIVE,
        sibling_of: int | None = None, reasoning: str = "",
    ) -> StoredMessage:
        """Add a message after the last one on screen (or after ``parent_id``, or as a
        sibling of ``sibling_of``); it becomes the end of the branch on screen.
        ``reasoning``: a reply's reasoning block, kept apart from ``content``."""
        now = time.time()
        if sibling_of is not None:
            parent_id = self.get_message(sibling_of).parent_id
        with self._tx() as db:
            parent = self._leaf(db, conv_id) if parent_id is ACTIVE else parent_id
            cur = db.execute(
                "INSERT INTO messages(conversation_id, role, content, status, provenance, "
                "created_at, parent_id, reasoning, active_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
                "(SELECT COALESCE(MAX(active_seq), 0) + 1 FROM messages "
                "WHERE conversation_id = ?))",
                (conv_id, role, content, status,
                 _provenance_json(provenance), now, parent,
                 reasoning, conv_id),
            )
            db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conv_id))
            msg_id = int(cur.lastrowid or 0)
        return self.get_message(msg_id)

    def update_message(
        self, msg_id: int, content: str | None = None, status: str | None = None,
        provenance: Provenance | dict[str, Any] | None = None, reasoning: str | None = None,
    ) -> None:
        sets: list[str] = []
        values: list[Any] = []
        if content is not None:
            sets.append("content = ?")
            values.append(content)
        if reasoning is not None:
            sets.append("reasoning = ?")
            values.append(reasoning)
        if status is not None:
            sets.append("status = ?")
            values.append(status)
        if provenance is not None:
            sets.append("provenance = ?")
            values.append(_provenance_json(provenance))
        if not sets:
            return
        with self._tx() as db:
            db.execute(f"UPDATE messages SET {', '.join(sets)} WHERE id = ?", (*values, msg_id))

    def set_tool_call(self, msg_id: int, call: dict[str, Any], content: str | None = None) -> None:
        """Record (or update) the tool call a reply made; ``content``: its text, replaced
        (a call's raw JSON is not shown as text)."""
        with self._tx() as db:
            if content is not None:
                db.execute("UPDATE messages SET tool_call = ?, content = ? WHERE id = ?",
                           (json.dumps(call, ensure_ascii=False), content, msg_id))
            else:
                db.execute("UPDATE messages SET tool_call = ? WHERE id = ?",
                           (json.dumps(call, ensure_ascii=False), msg_id))

    def delete_messages_from(self, conv_id: int, msg_id: int) -> int:
        """Delete message ``msg_id`` and every message that follows it, on every branch."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, parent_id FROM messages WHERE conversation_id = ?",
                (conv_id,)).fetchall()
        children: dict[int, list[int]] = {}
        for r in rows:
            if r["parent_id"] is not None:
                children.setdefault(int(r["parent_id"]), []).append(int(r["id"]))
        doomed, stack = [], [msg_id] if any(int(r["id"]) == msg_id for r in rows) else []
        while stack:
            node = stack.pop()
            doomed.append(node)
            stack.extend(children.get(node, ()))
        with self._tx() as db:
            db.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in doomed])
        return len(doomed)

    def recent_user_prompts(self, limit: int = 200) -> list[str]:
        """The user's latest prompts across conversations, oldest first (prompt history)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT content FROM messages WHERE role = 'user' ORDER BY id DESC LIMIT ?",
                (limit,)).fetchall()
        return [r["content"] for r in reversed(rows)]

    def reply_writer(self, msg_id: int, text: str = "", interval: float = 0.5,
                     reasoning: str = "") -> ReplyWriter:
        return ReplyWriter(self, msg_id, text, interval, reasoning)

    # --- search and export ---

    def search(self, query: str, limit: int = 50) -> list[SearchHit]:
        """Full-text search over message text (and a substring match on titles)."""
        # NUL ends FTS5's parse of the string (-> "unterminated string"): treat as space.
        terms = [t for t in query.replace('"', " ").replace("\x00", " ").split() if t]
        if not terms:
            return []
        # Quote each term (no FTS syntax from the user) and prefix-match the last one.
        fts = " ".join(f'"{t}"' for t in terms[:-1]) + f' "{terms[-1]}"*'
        with self._lock:
            rows = self._db.execute(
                "SELECT m.conversation_id AS cid, m.id AS mid, c.title AS title, "
                "snippet(messages_fts, 0, '[', ']', '…', 8) AS snip "
                "FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid "
                "JOIN conversations c ON c.id = m.conversation_id "
                "WHERE messages_fts MATCH ? ORDER BY rank LIMIT ?", (fts.strip(), limit),
            ).fetchall()
            titled = self._db.execute(
                "SELECT id, title FROM conversations WHERE title LIKE ? ORDER BY updated_at DESC",
                (f"%{query.strip()}%",)).fetchall()
        hits = [SearchHit(r["cid"], r["mid"], r["title"], r["snip"]) for r in rows]
        seen = {h.conversation_id for h in hits}
        hits += [SearchHit(r["id"], 0, r["title"], r["title"]) for r in titled
                 if r["id"] not in seen]
        return hits

    def integrity_check(self) -> str:
        with self._lock:
            return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])


class ReplyWriter:
    """Accumulates a streaming reply (answer and reasoning) and writes it in place at most
    every ``interval`` s."""

    def __init__(self, store: Store, msg_id: int, text: str = "", interval: float = 0.5,
                 reasoning: str = "") -> None:
        self.store = store
        self.msg_id = msg_id
        self.text = text
        self.reasoning = reasoning
        self.interval = interval
        self._written = (text, reasoning)
        self._last = time.monotonic()

    def append(self, delta: str, reasoning: str = "") -> None:
        self.text += delta
        self.reasoning += reasoning
        if time.monotonic() - self._last >= self.interval:
            self.flush()

    def flush(self) -> None:
        if (self.text, self.reasoning) != self._written:
            self.store.update_message(self.msg_id, content=self.text, reasoning=self.reasoning)
            self._written = (self.text, self.reasoning)
        self._last = time.monotonic()

    def finish(self, status: str, provenance: Provenance | dict[str, Any] | None = None) -> None:
        self.store.update_message(self.msg_id, content=self.text, status=status,
                                  provenance=provenance, reasoning=self.reasoning)
        self._written = (self.text, self.reasoning)
