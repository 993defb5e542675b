"""The typed provenance record: one writer, a tolerant reader, old rows read as before."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from slmchat.engine.generation.decode import GenerationChunk
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model.spec import ModelInfo
from slmchat.engine.store.curation import rating_of, set_preferred, set_rating
from slmchat.engine.store.provenance import (
    PROVENANCE_VERSION,
    ModelRecord,
    Provenance,
    reply_provenance,
)
from slmchat.engine.store.schema import SCHEMA_VERSION, migrate
from slmchat.engine.store.store import Store
from slmchat.engine.store.transcript import to_markdown

INFO = ModelInfo(name="tiny", path="/models/tiny", kind="hf", architecture="LlamaForCausalLM",
                 n_params=10, footprint_bytes=40, load_time_s=0.1, context_length=512,
                 has_chat_template=True, dtype="fp32", device="cpu", quant="none", adapter=None,
                 fingerprint="abcdef0123456789", runtime="onnx", runtime_copy="c0ffee00",
                 runtime_tag="onnx")

# Rows as slmchat wrote them before the record was typed (version 1, no "version" key).
APP_ROW = {
    "model": {"name": "tiny", "path": "/models/tiny", "fingerprint": "abcdef0123456789",
              "adapter": None, "adapter_fingerprint": None, "quant": "none", "dtype": "fp32",
              "device": "cpu", "kind": "hf", "runtime": "transformers", "runtime_copy": "",
              "runtime_tag": ""},
    "sampling": {"temperature": 0.7, "top_p": 0.9, "seed": None},
    "system_prompt": "be brief", "seed": 42, "prompt_tokens": 12, "cached_tokens": 0,
    "new_tokens": 7, "reasoning_tokens": 0, "ttft_s": 0.05, "prefill_tps": 200.0,
    "decode_tps": 31.5, "duration_s": 0.4, "finish_reason": "done", "started_at": 1.0,
}
SERVER_ROW = {  # no runtime fields, no system_prompt; the engine's reason
    "source": {"api": "openai", "endpoint": "/v1/chat/completions", "client": "127.0.0.1"},
    "model": {"name": "tiny", "path": "/models/tiny", "fingerprint": "abcdef0123456789",
              "adapter": None, "quant": "none", "dtype": "fp32", "device": "cpu", "kind": "hf"},
    "sampling": {"temperature": 0.0}, "seed": 5, "prompt_tokens": 9, "cached_tokens": 3,
    "new_tokens": 4, "ttft_s": 0.01, "prefill_tps": 90.0, "decode_tps": 40.0,
    "duration_s": 0.2, "finish_reason": "stop", "started_at": 2.0,
}


def _chunk(**values: object) -> GenerationChunk:
    base: dict[str, object] = {"text": "", "new_tokens": 0, "prompt_tokens": 0, "ttft_s": None,
                               "prefill_tps": 0.0, "decode_tps": 0.0, "seed": 0}
    return GenerationChunk(**{**base, **values})  # type: ignore[arg-type]


def _old_database(path: Path, version: int) -> None:
    """A conversations database at schema ``version`` with version-1 provenance rows."""
    db = sqlite3.connect(path, isolation_level=None)
    assert migrate(db, target=version) == version
    db.execute("INSERT INTO conversations(title, created_at, updated_at) VALUES ('old', 1, 1)")
    rows = [("user", "hi", None, "done"),
            ("assistant", "app answer", json.dumps(APP_ROW), "done"),
            ("assistant", "server answer", json.dumps(SERVER_ROW), "done"),
            ("assistant", "cut", json.dumps({**SERVER_ROW, "finish_reason": "cancelled"}),
             "stopped"),
            ("assistant", "rated", json.dumps({"curation": {"rating": "good"}}), "done"),
            ("assistant", "broken", "{not json", "done")]
    for i, (role, content, prov, status) in enumerate(rows, 1):
        db.execute("INSERT INTO messages(conversation_id, role, content, status, provenance, "
                   "created_at, parent_id, active_seq) VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
                   (role, content, status, prov, i, i - 1 or None, i))
    db.close()


def test_a_version_5_database_reads_its_old_rows_through_the_typed_record(tmp_path: Path) -> None:
    path = tmp_path / "v5.db"
    _old_database(path, 5)
    raw_before = sqlite3.connect(path).execute(
        "SELECT provenance FROM messages WHERE id = 2").fetchone()[0]
    # A stored row that is not JSON would fail the whole load: keep it out of _msg.
    sqlite3.connect(path, isolation_level=None).execute(
        "UPDATE messages SET provenance = NULL WHERE content = 'broken'")
    store = Store(path)
    user, app, server, cut, rated, _broken = store.all_messages(1)
    assert user.prov is None
    assert app.prov is not None and app.prov.version == 1
    assert app.prov.model == ModelRecord.from_dict(APP_ROW["model"])
    assert (app.prov.system_prompt, app.prov.seed, app.prov.new_tokens, app.prov.decode_tps,
            app.prov.finish_reason) == ("be brief", 42, 7, 31.5, "done")
    # Server rows: the engine's reasons became statuses, missing fields read as unknown.
    assert server.prov is not None and server.prov.finish_reason == "done"
    assert cut.prov is not None and cut.prov.finish_reason == "stopped"
    assert server.prov.model is not None and server.prov.model.runtime == ""
    assert server.prov.model.runtime_tag is None and server.prov.system_prompt is None
    assert server.prov.source == SERVER_ROW["source"] and server.prov.greedy
    assert rated.prov is not None and rated.prov.rating == "good" and rated.prov.model is None
    store.close()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 8
    stored = dict(raw.execute("SELECT content, provenance FROM messages").fetchall())
    # Step 8 rewrote only the server rows' finish_reason; every other byte stayed.
    assert stored["app answer"] == raw_before
    assert json.loads(stored["server answer"]) == {**SERVER_ROW, "finish_reason": "done"}
    assert json.loads(stored["cut"])["finish_reason"] == "stopped"


def test_step_8_leaves_rows_it_cannot_parse(tmp_path: Path) -> None:
    path = tmp_path / "v7.db"
    _old_database(path, 7)
    Store(path).close()
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT provenance FROM messages WHERE content = 'broken'"
                       ).fetchone()[0] == "{not json"
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 8


def test_the_reader_maps_old_server_reasons_and_keeps_unknown_keys() -> None:
    prov = Provenance.from_dict({**SERVER_ROW, "finish_reason": "cancelled",
                                 "from_the_future": {"x": 1}})
    assert prov.finish_reason == "stopped" and prov.status == "stopped"
    assert prov.to_dict()["from_the_future"] == {"x": 1}
    assert Provenance.from_dict(None) == Provenance.from_dict([1, 2]) == Provenance(version=1)
    odd = Provenance.from_dict({"seed": "not a number", "new_tokens": True, "model": "x"})
    assert (odd.seed, odd.new_tokens, odd.model) == (None, None, None)


def test_the_writer_round_trips_and_records_every_core_field() -> None:
    last = _chunk(new_tokens=6, prompt_tokens=10, cached_tokens=2, seed=9,
                           ttft_s=0.02, prefill_tps=50.0, decode_tps=25.0, finish_reason="stop",
                           speculative="prompt", drafted=4, accepted=3)
    prov = reply_provenance(info=INFO, params=SamplingParams(temperature=0.5), last=last,
                            status="done", started=100.0, system_prompt="")
    data = prov.to_dict()
    assert set(Provenance.CORE) <= set(data)
    assert data["version"] == PROVENANCE_VERSION and data["finish_reason"] == "done"
    assert data["model"]["runtime"] == "onnx" and data["model"]["runtime_copy"] == "c0ffee00"
    assert data["speculative"] == {"mode": "prompt", "drafted": 4, "accepted": 3}
    assert "stop" not in data["sampling"] and "source" not in data and "error" not in data
    assert Provenance.from_dict(json.loads(json.dumps(data))) == prov


def test_a_continued_reply_keeps_its_passes_and_sums_its_tokens() -> None:
    params = SamplingParams()
    first = reply_provenance(
        info=INFO, params=params, status="length", started=1.0, system_prompt="",
        last=_chunk(new_tokens=5, reasoning_tokens=2, finish_reason="length"),
        retrieval={"chunks": [1], "sources": []})
    second = reply_provenance(
        info=INFO, params=params, status="done", started=2.0, system_prompt="",
        last=_chunk(new_tokens=3, reasoning_tokens=1, finish_reason="stop"),
        previous=Provenance.from_dict(first.to_dict()))
    assert [s["finish_reason"] for s in second.segments] == ["length", "done"]
    assert (second.new_tokens, second.reasoning_tokens) == (8, 3)
    assert second.retrieval == {"chunks": [1], "sources": []}  # the sources stay
    third = reply_provenance(
        info=INFO, params=params, status="done", started=3.0, system_prompt="",
        last=_chunk(new_tokens=1, finish_reason="stop"),
        previous=Provenance.from_dict(second.to_dict()))
    assert len(third.segments) == 3 and third.new_tokens == 9


def test_curating_an_old_row_changes_its_curation_only(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    conv = store.create_conversation()
    msg = store.add_message(conv.id, "assistant", "model text", provenance=SERVER_ROW)
    set_rating(store, msg.id, "bad")
    set_preferred(store, msg.id, "better text")
    set_preferred(store, msg.id, "best text")
    after = store.get_message(msg.id)
    assert rating_of(after) == "good" and after.prov is not None
    assert after.prov.original == "model text"  # the first original, however often edited
    assert {k: v for k, v in (after.provenance or {}).items() if k != "curation"} == SERVER_ROW
    bare = store.add_message(conv.id, "assistant", "x")
    set_rating(store, bare.id, "good")
    assert set(store.get_message(bare.id).provenance or {}) == {"curation"}
    store.close()


def test_markdown_reads_old_and_new_rows_alike(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    conv = store.create_conversation()
    store.add_message(conv.id, "user", "q")
    store.add_message(conv.id, "assistant", "a", provenance=SERVER_ROW)
    store.add_message(conv.id, "user", "q2")
    store.add_message(conv.id, "assistant", "b", provenance=reply_provenance(
        info=INFO, params=SamplingParams(temperature=0.7), status="done", started=1.0,
        system_prompt="short", last=_chunk(new_tokens=3, seed=11,
                                                      decode_tps=12.0, finish_reason="stop")))
    text = to_markdown(store, conv.id)
    assert "<sub>tiny · 4 tokens · 40.0 tok/s</sub>" in text  # greedy: no seed
    assert "<sub>tiny · seed 11 · 3 tokens · 12.0 tok/s</sub>" in text
    assert "> **System:** short" in text  # the old row recorded none: one prompt
    store.close()
