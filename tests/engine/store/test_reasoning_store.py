"""A reply's reasoning is stored apart from its answer: migration, round trip, export."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from slmchat.engine.store.schema import SCHEMA_VERSION, migrate
from slmchat.engine.store.store import Store
from slmchat.engine.store.transcript import to_json, to_markdown


def test_a_version_5_database_gains_an_empty_reasoning_column(tmp_path: Path) -> None:
    path = tmp_path / "v5.db"
    db = sqlite3.connect(path, isolation_level=None)
    assert migrate(db, target=5) == 5
    db.execute("INSERT INTO conversations(title, created_at, updated_at) VALUES ('old', 1, 1)")
    db.execute("INSERT INTO messages(conversation_id, role, content, created_at, active_seq) "
               "VALUES (1, 'assistant', 'an old answer about pelicans', 1, 1)")
    db.close()
    store = Store(path)
    (old,) = store.messages(1)
    assert old.content == "an old answer about pelicans" and old.reasoning == ""
    store.update_message(old.id, reasoning="thought about it later")
    assert store.get_message(old.id).reasoning == "thought about it later"
    assert store.get_message(old.id).content == "an old answer about pelicans"
    store.close()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 8


def test_reasoning_round_trips_apart_from_the_answer(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    conv = store.create_conversation("t")
    store.add_message(conv.id, "user", "why is the sky blue")
    reply = store.add_message(conv.id, "assistant", "", status="streaming")
    writer = store.reply_writer(reply.id, interval=0.0)
    writer.append("", "Rayleigh scattering, ")
    writer.append("", "shorter wavelengths.")
    # Written while streaming, both parts.
    assert store.get_message(reply.id).reasoning == "Rayleigh scattering, shorter wavelengths."
    writer.append("Blue light scatters most.")
    writer.finish("done", {"reasoning_tokens": 7})
    msg = store.get_message(reply.id)
    assert msg.content == "Blue light scatters most."
    assert msg.reasoning == "Rayleigh scattering, shorter wavelengths."
    assert msg.status == "done" and msg.provenance == {"reasoning_tokens": 7}
    # Search finds answers, not the reasoning.
    assert [h.message_id for h in store.search("scatters")] == [reply.id]
    assert store.search("Rayleigh") == []
    # Added whole (the compare view stores finished replies).
    other = store.add_message(conv.id, "assistant", "ok", reasoning="short")
    assert store.get_message(other.id).reasoning == "short"
    # Exports: JSON has the field; Markdown folds it above the answer.
    data = json.loads(to_json(store, conv.id))
    assert {m["id"]: m["reasoning"] for m in data["messages"]}[reply.id] == msg.reasoning
    md = to_markdown(store, conv.id)
    assert "<details><summary>Thinking</summary>\n\nRayleigh scattering, shorter wavelengths." in md
    assert md.index("Rayleigh") < md.index("Blue light scatters most.")
    store.close()
