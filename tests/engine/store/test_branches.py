"""Branches in the store: editing or regenerating adds a sibling; the branch on screen
is a path through the tree; migration keeps existing conversations as one branch."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from slmchat.engine.store.schema import migrate
from slmchat.engine.store.store import Store
from slmchat.engine.store.transcript import to_json, to_markdown


def contents(store: Store, conv_id: int) -> list[str]:
    return [m.content for m in store.messages(conv_id)]


def test_migration_keeps_each_conversation_as_one_branch(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    db = sqlite3.connect(path, isolation_level=None)
    assert migrate(db, target=3) == 3
    for cid in (1, 2):
        db.execute("INSERT INTO conversations(title, created_at, updated_at) VALUES (?, 1, 1)",
                   (f"c{cid}",))
    # Interleaved ids, as two conversations written at the same time would have.
    for cid, role, text in ((1, "user", "a"), (2, "user", "x"), (1, "assistant", "b"),
                            (2, "assistant", "y"), (1, "user", "c")):
        db.execute("INSERT INTO messages(conversation_id, role, content, created_at) "
                   "VALUES (?, ?, ?, 1)", (cid, role, text))
    db.close()
    store = Store(path)
    assert contents(store, 1) == ["a", "b", "c"] and contents(store, 2) == ["x", "y"]
    chain = store.messages(1)
    assert chain[0].parent_id is None
    assert [m.parent_id for m in chain[1:]] == [m.id for m in chain[:-1]]
    assert store.branch_positions(1) == {}
    # New messages continue the migrated branch.
    store.add_message(1, "assistant", "d")
    assert contents(store, 1) == ["a", "b", "c", "d"]
    assert store.search("x")[0].conversation_id == 2  # the FTS index is untouched
    store.close()


def test_regenerate_adds_a_sibling_and_keys_move_between_them(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    conv = store.create_conversation("t")
    q = store.add_message(conv.id, "user", "question")
    first = store.add_message(conv.id, "assistant", "first answer")
    store.set_active(q.id)  # what regenerate does before adding the new reply
    assert contents(store, conv.id) == ["question"]
    second = store.add_message(conv.id, "assistant", "second answer")
    assert second.parent_id == q.id
    assert contents(store, conv.id) == ["question", "second answer"]
    assert [m.id for m in store.siblings(first.id)] == [first.id, second.id]
    assert store.branch_positions(conv.id) == {second.id: (2, 2)}
    assert [m.content for m in store.choose_branch(first.id)] == ["question", "first answer"]
    assert store.branch_positions(conv.id) == {first.id: (1, 2)}
    store.close()


def test_edit_branches_at_the_root_and_each_branch_remembers_its_path(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    conv = store.create_conversation("t")
    ids = {t: store.add_message(conv.id, r, t).id
           for r, t in (("user", "one"), ("assistant", "1"), ("user", "two"), ("assistant", "2"))}
    # Edit the first message: a sibling with no parent; the old turns stay.
    edited = store.add_message(conv.id, "user", "ONE", sibling_of=ids["one"])
    assert edited.parent_id is None
    assert contents(store, conv.id) == ["ONE"]
    store.add_message(conv.id, "assistant", "1'")
    assert store.branch_positions(conv.id) == {edited.id: (2, 2)}
    # Back to the first branch: down to where it was left, not just its first message.
    assert [m.content for m in store.choose_branch(ids["one"])] == ["one", "1", "two", "2"]
    # Edit "two" there, then go back and forth: each branch keeps its own tail.
    store.add_message(conv.id, "user", "TWO", sibling_of=ids["two"])
    store.add_message(conv.id, "assistant", "2'")
    assert contents(store, conv.id) == ["one", "1", "TWO", "2'"]
    store.choose_branch(edited.id)
    assert contents(store, conv.id) == ["ONE", "1'"]
    store.choose_branch(ids["one"])
    assert contents(store, conv.id) == ["one", "1", "TWO", "2'"]  # the last seen below it
    store.choose_branch(ids["two"])
    assert contents(store, conv.id) == ["one", "1", "two", "2"]
    store.close()


def test_delete_removes_a_subtree_only_and_its_text(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    conv = store.create_conversation("t")
    q = store.add_message(conv.id, "user", "question")
    a = store.add_message(conv.id, "assistant", "zqxfirstreply")
    store.add_message(conv.id, "user", "zqxfollowup")
    store.set_active(q.id)
    store.add_message(conv.id, "assistant", "keptreply")
    assert store.delete_messages_from(conv.id, a.id) == 2
    assert contents(store, conv.id) == ["question", "keptreply"]
    assert store.search("zqxfirstreply") == [] and store.search("zqxfollowup") == []
    assert store.delete_messages_from(conv.id, 999) == 0
    store.close()


def test_a_long_chain_deletes_without_recursion(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    conv = store.create_conversation("long")
    for i in range(1200):
        store.add_message(conv.id, "user" if i % 2 == 0 else "assistant", f"m{i}")
    assert len(store.messages(conv.id)) == 1200
    store.delete_conversation(conv.id)
    assert store.all_messages(conv.id) == []
    assert store.integrity_check() == "ok"
    store.close()


def test_export_markdown_is_the_branch_on_screen_json_is_the_tree(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    conv = store.create_conversation("t")
    q = store.add_message(conv.id, "user", "question")
    store.add_message(conv.id, "assistant", "old answer")
    store.set_active(q.id)
    new = store.add_message(conv.id, "assistant", "new answer")
    md = to_markdown(store, conv.id)
    assert "new answer" in md and "old answer" not in md
    data = json.loads(to_json(store, conv.id))
    assert [m["content"] for m in data["messages"]] == ["question", "old answer", "new answer"]
    assert [m["parent_id"] for m in data["messages"]] == [None, q.id, q.id]
    assert data["active"] == [q.id, new.id]
    store.close()
