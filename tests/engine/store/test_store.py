"""The conversation store: migrations, FTS, durability across a kill, real deletion."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from slmchat.engine.store.schema import SCHEMA_VERSION, migrate
from slmchat.engine.store.store import Store
from slmchat.engine.store.transcript import to_json, to_markdown
from slmchat.errors import SlmChatError


def file_bytes(db: Path) -> bytes:
    data = db.read_bytes()
    wal = db.with_name(db.name + "-wal")
    if wal.exists():
        data += wal.read_bytes()
    return data


def test_new_database_is_private_wal_and_current(tmp_path: Path) -> None:
    store = Store(tmp_path / "sub" / "c.db")
    store.create_conversation("x")
    assert stat.S_IMODE((tmp_path / "sub" / "c.db").stat().st_mode) == 0o600
    wal = tmp_path / "sub" / "c.db-wal"
    assert wal.exists() and stat.S_IMODE(wal.stat().st_mode) == 0o600
    db = sqlite3.connect(tmp_path / "sub" / "c.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    store.close()


def test_migrates_a_version_1_database_step_by_step(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    assert migrate(db, target=1) == 1
    db.execute("INSERT INTO conversations(title, created_at, updated_at) VALUES ('old', 1, 1)")
    db.execute("INSERT INTO messages(conversation_id, role, content, created_at) "
               "VALUES (1, 'user', 'a message about pelicans', 1)")
    db.close()
    store = Store(path)  # runs v2 (FTS + backfill) and v3 (settings column)
    assert store.search("pelicans")[0].conversation_id == 1
    conv = store.get_conversation(1)
    assert conv.title == "old" and conv.settings == {}
    assert store.messages(1)[0].content == "a message about pelicans"
    store.set_conversation_settings(1, {"temperature": 0.1})
    assert store.get_conversation(1).settings == {"temperature": 0.1}
    store.close()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 8


def test_a_failed_step_leaves_the_previous_version(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    migrate(db, target=1)
    db.execute("CREATE TABLE messages_fts(x)")  # makes step 2 fail half-way
    with pytest.raises(sqlite3.OperationalError):
        migrate(db)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'messages_ai'"
                      ).fetchone()[0] == 0


def test_refuses_a_database_from_a_newer_version(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "new.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(SlmChatError, match="newer slmchat"):
        Store(tmp_path / "new.db")


def test_full_text_search(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    a = store.create_conversation("Recipes")
    store.add_message(a.id, "user", "How do I make sourdough bread?")
    b = store.create_conversation("Code")
    store.add_message(b.id, "user", "Explain Python generators")
    msg = store.add_message(b.id, "assistant", "", status="streaming")
    store.update_message(msg.id, content="A generator yields values lazily.")
    assert [h.conversation_id for h in store.search("sourdough")] == [a.id]
    assert [h.conversation_id for h in store.search("gener")] == [b.id, b.id]  # prefix
    assert store.search("yields")[0].snippet == "A generator [yields] values lazily."
    assert [h.conversation_id for h in store.search("recip")] == [a.id]  # title match
    assert store.search("bread python") == []  # all terms must match
    for nasty in ('"', "AND", "a OR (", "*", "NEAR(x y)", "col:val"):
        store.search(nasty)  # user text is never FTS syntax
    store.update_message(msg.id, content="Rewritten text.")
    assert store.search("lazily") == []
    assert store.search("rewritten")[0].message_id == msg.id


def test_messages_edit_truncate_and_history(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    conv = store.create_conversation("t", {"system_prompt": "be nice"})
    ids = [store.add_message(conv.id, r, t).id
           for r, t in (("user", "one"), ("assistant", "1"), ("user", "two"), ("assistant", "2"))]
    assert store.delete_messages_from(conv.id, ids[2]) == 2
    assert [m.content for m in store.messages(conv.id)] == ["one", "1"]
    assert store.recent_user_prompts() == ["one"]
    md = to_markdown(store, conv.id)
    assert md.startswith("# t\n") and "**System:** be nice" in md and "## Assistant\n\n1" in md
    data = json.loads(to_json(store, conv.id))
    assert data["conversation"]["settings"] == {"system_prompt": "be nice"}
    assert [m["content"] for m in data["messages"]] == ["one", "1"]


CHILD = textwrap.dedent("""
    import sys, time
    from slmchat.engine.store.store import Store
    store = Store(sys.argv[1])
    conv = store.create_conversation("crash")
    store.add_message(conv.id, "user", "tell me a long story")
    msg = store.add_message(conv.id, "assistant", "", status="streaming")
    writer = store.reply_writer(msg.id, interval=0.05)
    for i in range(100000):
        writer.append(f"w{i} ")
        print(i + 1, flush=True)
        time.sleep(0.005)
""")


def test_kill_mid_reply_loses_at_most_the_last_interval(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE,
                            text=True, cwd=Path(__file__).resolve().parents[2])
    assert proc.stdout is not None
    seen = 0
    deadline = time.monotonic() + 60
    while seen < 150 and time.monotonic() < deadline:
        seen = int(proc.stdout.readline() or 0) or seen
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert seen >= 150
    store = Store(path)
    assert store.integrity_check() == "ok"
    user, reply = store.messages(1)
    assert (user.content, reply.status) == ("tell me a long story", "interrupted")
    words = reply.content.split()
    assert words == [f"w{i}" for i in range(len(words))]  # an exact prefix
    # Flushes every 0.05 s at ~0.005+ s per word: at most ~10 words may be missing
    # from what the child had written when it printed ``seen``.
    assert len(words) >= seen - 20


def test_delete_removes_text_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    store = Store(path)
    keep = store.create_conversation("keep")
    store.add_message(keep.id, "user", "keepsake words stay here")
    gone = store.create_conversation("secret plans")
    store.add_message(gone.id, "user", "the zqxsecretmarker is " + "x" * 3000)
    msg = store.add_message(gone.id, "assistant", "", status="streaming")
    for i in range(5):  # several in-place versions, as while streaming
        store.update_message(msg.id, content=f"partial {i} zqxreplymarker " * (i + 1))
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = file_bytes(path)
    assert b"zqxsecretmarker" in before and b"zqxreplymarker" in before
    store.delete_conversation(gone.id)
    after = file_bytes(path)
    assert b"zqxsecretmarker" not in after and b"zqxreplymarker" not in after
    assert b"secret plans" not in after
    assert b"keepsake words" in after
    assert store.search("zqxsecretmarker") == []
    assert store.integrity_check() == "ok"
    store.close()
    assert Store(path).search("keepsake")[0].conversation_id == keep.id


def test_two_processes_creating_the_database_at_once_take_turns(tmp_path: Path) -> None:
    """Another process is half-way through creating the database (its write transaction
    is open) when this one opens it: this one waits and finds it made, not "table
    conversations already exists"."""
    import sqlite3
    import threading

    from slmchat.engine.store.schema import MIGRATIONS, SCHEMA_VERSION

    path = tmp_path / "c.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("PRAGMA journal_mode = WAL")
    other.execute("BEGIN IMMEDIATE")
    for step in MIGRATIONS:
        step(other)
    other.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    threading.Timer(0.5, lambda: other.execute("COMMIT")).start()
    store = Store(path)  # waits for the other's commit (sqlite's busy timeout)
    try:
        conv = store.create_conversation("fine")
        assert store.get_conversation(conv.id).title == "fine"
    finally:
        store.close()
        other.close()


def test_v5_keeps_a_version_4_database_and_adds_the_conversation_model(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    db = sqlite3.connect(path, isolation_level=None)
    assert migrate(db, target=4) == 4
    db.execute("INSERT INTO conversations(title, created_at, updated_at, settings) "
               "VALUES ('kept', 1, 1, '{\"temperature\": 0.3}')")
    db.execute("INSERT INTO messages(conversation_id, role, content, created_at, active_seq) "
               "VALUES (1, 'user', 'about herons', 1, 1)")
    db.close()
    store = Store(path)
    conv = store.get_conversation(1)
    assert (conv.title, conv.settings, conv.model) == ("kept", {"temperature": 0.3}, None)
    assert [m.content for m in store.messages(1)] == ["about herons"]
    assert store.model_changes(1) == []
    spec = {"path": "/models/tiny", "dtype": "fp32", "runtime": "auto"}
    change = store.add_model_change(1, "tiny (fp32, cpu)", spec)
    assert change.after_id == store.messages(1)[0].id
    assert store.get_conversation(1).model == spec
    reply = store.add_message(1, "assistant", "herons fish")
    store.close()
    again = Store(path)  # survives reopening
    assert [(c.after_id, c.label) for c in again.model_changes(1)] == [
        (change.after_id, "tiny (fp32, cpu)")]
    assert again.get_conversation(1).model == spec
    assert reply.id > change.after_id
    again.delete_conversation(1)
    assert again.model_changes(1) == []
    again.close()


def test_a_full_disk_says_so_and_keeps_what_was_saved(small_disk) -> None:
    from slmchat.engine.store.store import StoreWriteError

    store = Store(small_disk.root / "c.db")
    conv = store.create_conversation("kept")
    store.add_message(conv.id, "user", "saved before the disk filled")
    small_disk.fill(24 * 1024)
    with pytest.raises(StoreWriteError) as err:
        store.add_message(conv.id, "user", "x" * 200_000)
    # SQLite's own reason, not "cannot rollback - no transaction is active".
    assert err.value.disk_full and str(err.value).startswith("disk full:")
    assert "database or disk is full" in str(err.value)
    assert isinstance(err.value, SlmChatError)
    # A group of writes is saved together or not at all: no empty conversation row.
    with pytest.raises(StoreWriteError), store.transaction():
        store.create_conversation("would be empty")
        store.add_message(conv.id, "user", "y" * 200_000)
    assert [c.title for c in store.list_conversations()] == ["kept"]
    assert [m.content for m in store.messages(conv.id)] == ["saved before the disk filled"]
    small_disk.unfill()
    store.add_message(conv.id, "assistant", "room again")
    store.close()
    reopened = Store(small_disk.root / "c.db")
    assert [m.content for m in reopened.messages(conv.id)] == [
        "saved before the disk filled", "room again"]
    assert reopened.integrity_check() == "ok"
    reopened.close()


def test_opening_the_store_on_a_full_disk_says_so_and_loses_nothing(small_disk) -> None:
    path = small_disk.root / "c.db"
    store = Store(path)
    conv = store.create_conversation("x")
    store.add_message(conv.id, "user", "q")
    store.add_message(conv.id, "assistant", "half a reply " * 500, status="streaming")
    store.close()  # as a killed app leaves it
    small_disk.fill(0)
    from slmchat.engine.store.store import StoreOpenError

    with pytest.raises(StoreOpenError, match=r"cannot open the conversations in .*the disk "
                                             r"is full: free some space"):
        Store(path)  # WAL needs its -wal and -shm files: one clear line, not a traceback
    small_disk.unfill()
    again = Store(path)
    assert again.messages(conv.id)[-1].status == "interrupted"
    again.close()
