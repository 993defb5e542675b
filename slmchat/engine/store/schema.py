"""The conversations database schema: one migration step per ``PRAGMA user_version``.

Never edit a released step; add a new one. ``migrate`` runs each step in its own
transaction together with its version bump, so a failed step leaves the previous version.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

# --- migrations: one step per version; never edit a released step, add a new one ---

def _script(db: sqlite3.Connection, script: str) -> None:
    """Run statements one by one (``executescript`` would commit the open transaction)."""
    buf = ""
    for part in script.split(";"):
        buf += part + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \n;"):
                db.execute(buf)
            buf = ""


def _v1(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        CREATE TABLE conversations (
            id INTEGER PRIMARY KEY,
            title TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL
                REFERENCES conversations(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
            content TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'done',
            provenance TEXT,
            created_at REAL NOT NULL
        );
        CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
        """
    )


def _v2(db: sqlite3.Connection) -> None:
    # External-content FTS5: the index refers to messages rows instead of copying text.
    _script(
        db,
        """
        CREATE VIRTUAL TABLE messages_fts USING fts5(
            content, content='messages', content_rowid='id'
        );
        CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
        END;
        CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content)
                VALUES ('delete', old.id, old.content);
        END;
        CREATE TRIGGER messages_au AFTER UPDATE OF content ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content)
                VALUES ('delete', old.id, old.content);
            INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
        END;
        INSERT INTO messages_fts(messages_fts) VALUES ('rebuild');
        """
    )


def _v3(db: sqlite3.Connection) -> None:
    # Per-conversation settings (system prompt, sampling) as a JSON object.
    db.execute("ALTER TABLE conversations ADD COLUMN settings TEXT NOT NULL DEFAULT '{}'")


def _v4(db: sqlite3.Connection) -> None:
    # Branches: each message names the one it follows (NULL: the first of a conversation,
    # or a sibling of it). Editing or regenerating adds a sibling instead of overwriting.
    # The branch on screen ends at the message with the highest active_seq; each message
    # added or chosen gets a new highest value, so a branch left and come back to keeps
    # the path last seen below it. No foreign key: a cascade would recurse once per
    # message of a long chain (SQLite stops at 1,000 levels); deletes walk the tree.
    # Existing conversations become one branch each, in their stored order.
    _script(
        db,
        """
        ALTER TABLE messages ADD COLUMN parent_id INTEGER;
        ALTER TABLE messages ADD COLUMN active_seq INTEGER NOT NULL DEFAULT 0;
        UPDATE messages SET active_seq = id, parent_id = (
            SELECT MAX(p.id) FROM messages AS p
            WHERE p.conversation_id = messages.conversation_id AND p.id < messages.id);
        CREATE INDEX messages_by_parent ON messages(conversation_id, parent_id);
        """
    )


def _v5(db: sqlite3.Connection) -> None:
    # Per-conversation model: the spec (path, dtype, device, quant, adapter, runtime) a
    # conversation last used, as JSON (NULL: none yet). Model changes inside a
    # conversation are kept as dividers: after_id is the last message before the change
    # (NULL: before the first), so the log shows where the replies' model changed.
    _script(
        db,
        """
        ALTER TABLE conversations ADD COLUMN model TEXT;
        CREATE TABLE model_changes (
            id INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL
                REFERENCES conversations(id) ON DELETE CASCADE,
            after_id INTEGER,
            label TEXT NOT NULL,
            spec TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL
        );
        CREATE INDEX model_changes_by_conversation ON model_changes(conversation_id, id);
        """
    )


def _v6(db: sqlite3.Connection) -> None:
    # A reply's reasoning ("thinking"), apart from its answer in content: the log shows it
    # collapsed, the next prompt leaves it out, search and training data see the answer.
    db.execute("ALTER TABLE messages ADD COLUMN reasoning TEXT NOT NULL DEFAULT ''")


def _v7(db: sqlite3.Connection) -> None:
    # Tool calls from the chat (MCP): an assistant message that called a tool holds the
    # call, the user's answer and the result as JSON (NULL: an ordinary message). The
    # model's reply after the result is the next message, so a branch reads call,
    # result, answer in order, and the text columns stay what FTS and exports read.
    db.execute("ALTER TABLE messages ADD COLUMN tool_call TEXT")


def _v8(db: sqlite3.Connection) -> None:
    # One meaning of a reply's provenance.finish_reason (engine/store/provenance.py): the
    # stored status, as the app always wrote it. ``slmchat serve --log-conversations``
    # wrote the engine's reason there; its "stop" and "cancelled" become "done" and
    # "stopped" ("length" and "error" are the same word in both). Rows whose JSON does
    # not parse are left as they are (the reader ignores them).
    db.execute(
        """
        UPDATE messages SET provenance = json_set(provenance, '$.finish_reason',
            CASE json_extract(provenance, '$.finish_reason')
                WHEN 'stop' THEN 'done' ELSE 'stopped' END)
        WHERE CASE WHEN json_valid(provenance) AND json_type(provenance) = 'object'
            THEN json_extract(provenance, '$.finish_reason') IN ('stop', 'cancelled')
            ELSE 0 END
        """)


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Upgrade ``db`` step by step to ``target``; each step commits with its version.

    The version is read inside a write transaction (BEGIN IMMEDIATE), so two processes
    opening a new database at once take turns: the second waits, then sees the first's
    version instead of running the same step again ("table already exists").
    """
    while True:
        db.execute("BEGIN IMMEDIATE")
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                from slmchat.errors import SlmChatError

                raise SlmChatError(
                    f"the conversations database is from a newer slmchat (schema {version}, "
                    f"this version knows {SCHEMA_VERSION})"
                )
            if version >= target:
                db.execute("COMMIT")
                return version
            MIGRATIONS[version](db)
            db.execute(f"PRAGMA user_version = {version + 1}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
