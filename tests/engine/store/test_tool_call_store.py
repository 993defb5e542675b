"""Tool calls in the store: the migration that adds them (on a database written before
it), the call and its result kept with the reply, and the Markdown export showing them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from slmchat.engine.store.schema import SCHEMA_VERSION, migrate
from slmchat.engine.store.store import Store
from slmchat.engine.store.transcript import to_json, to_markdown

CALL = {"id": "call_1", "server": "math", "name": "add", "arguments": {"a": 2, "b": 3}}


def test_the_tool_call_step_keeps_an_older_database(tmp_path: Path) -> None:
    path = tmp_path / "v5.db"
    db = sqlite3.connect(path, isolation_level=None)
    assert migrate(db, target=5) == 5
    db.execute("INSERT INTO conversations(title, created_at, updated_at) VALUES ('old', 1, 1)")
    db.execute("INSERT INTO messages(conversation_id, role, content, created_at, active_seq) "
               "VALUES (1, 'user', 'add two and three', 1, 1)")
    db.execute("INSERT INTO messages(conversation_id, role, content, created_at, active_seq, "
               "parent_id) VALUES (1, 'assistant', 'five', 2, 2, 1)")
    db.close()
    store = Store(path)
    try:
        old = store.messages(1)
        assert [(m.content, m.tool_call) for m in old] == [("add two and three", None),
                                                          ("five", None)]
        store.set_tool_call(old[1].id, CALL, content="")
        assert store.get_message(old[1].id).tool_call == CALL
        assert store.get_message(old[1].id).content == ""
        assert store.search("add two")[0].conversation_id == 1  # FTS still follows
    finally:
        store.close()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_call_result_and_answer_are_kept_in_order(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    try:
        conv = store.create_conversation("sums")
        store.add_message(conv.id, "user", "What is 2 + 3?")
        reply = store.add_message(conv.id, "assistant", '{"name": "add"}')
        store.set_tool_call(reply.id, {**CALL, "consent": "once"}, content="")
        store.set_tool_call(reply.id, {**CALL, "consent": "once", "result": "5", "is_error": False})
        store.add_message(conv.id, "assistant", "The sum is 5.")
        msgs = store.messages(conv.id)
        assert [m.role for m in msgs] == ["user", "assistant", "assistant"]
        assert msgs[1].tool_call is not None and msgs[1].tool_call["result"] == "5"
        assert msgs[2].parent_id == msgs[1].id
        md = to_markdown(store, conv.id)
        assert "**Tool call:** `math.add`" in md and '"a": 2' in md and "**Result:**" in md
        assert md.index("**Result:**") < md.index("The sum is 5.")
        assert '"tool_call"' in to_json(store, conv.id)
    finally:
        store.close()


def test_a_denied_call_exports_as_not_run(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    try:
        conv = store.create_conversation("x")
        store.add_message(conv.id, "user", "delete my notes")
        reply = store.add_message(conv.id, "assistant", "")
        store.set_tool_call(reply.id, {**CALL, "consent": "denied"})
        md = to_markdown(store, conv.id)
        assert "*(not run: denied)*" in md and "**Result:**" not in md
    finally:
        store.close()


def test_the_training_export_keeps_a_call_and_its_result_as_context(tmp_path: Path) -> None:
    """A good answer that read a tool's result is learned with the call and the result
    before it, not as if the model had known "5" by itself; a denied call is left out."""
    import json

    from slmchat.engine.store import curation

    store = Store(tmp_path / "c.db")
    try:
        conv = store.create_conversation("sums")
        store.add_message(conv.id, "user", "What is 2 + 3?")
        denied = store.add_message(conv.id, "assistant", "")
        store.set_tool_call(denied.id, {**CALL, "consent": "denied"})
        called = store.add_message(conv.id, "assistant", "")
        store.set_tool_call(called.id, {**CALL, "consent": "once", "result": "5", "is_error": False})
        answer = store.add_message(conv.id, "assistant", "The sum is 5.")
        curation.set_rating(store, answer.id, "good")
        out = tmp_path / "train.jsonl"
        report = curation.export_training(store, out)
        (row,) = [json.loads(line) for line in out.read_text().splitlines()]
        assert row["messages"] == [
            {"role": "user", "content": "What is 2 + 3?"},
            {"role": "assistant", "content": '{"name": "add", "arguments": {"a": 2, "b": 3}}',
             "weight": 0},
            {"role": "user", "content": "Result of add: 5"},
            {"role": "assistant", "content": "The sum is 5."},
        ]
        assert (report.trained_replies, report.context_replies) == (1, 1)
    finally:
        store.close()
