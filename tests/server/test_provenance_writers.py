"""The app and the server write a reply's provenance through one function: the same type
with the same fields, whichever wrote it."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from slmchat.engine.generation.decode import GenerationChunk
from slmchat.engine.generation.prompting import ChatMessage
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.store.provenance import ModelRecord, Provenance
from slmchat.engine.store.store import Store
from slmchat.server.convlog import ConversationLog
from slmchat.tui.generation import STATUS_FOR_FINISH, ReplyJob, provenance
from tests.tui.fakes import fake_info

INFO = dataclasses.replace(fake_info("tiny", "/models/tiny"), runtime="onnx",
                           runtime_copy="c0ffee00", runtime_tag="onnx")
MESSAGES = [ChatMessage("system", "be brief"), ChatMessage("user", "hello there")]


def _last(reason: str) -> GenerationChunk:
    return GenerationChunk(text="", new_tokens=4, prompt_tokens=11, ttft_s=0.02,
                           prefill_tps=80.0, decode_tps=30.0, seed=7, cached_tokens=3,
                           reasoning_tokens=1, finish_reason=reason)  # type: ignore[arg-type]


def _both(tmp_path: Path, reason: str) -> tuple[Provenance, Provenance, Store]:
    store = Store(tmp_path / "c.db")
    params = SamplingParams(temperature=0.3, seed=7)
    started = time.time()
    conv_id = ConversationLog(store).record(
        api="openai", endpoint="/v1/chat/completions", client="127.0.0.1", messages=MESSAGES,
        reply="hi", last=_last(reason), params=params, info=INFO, started=started)
    server = store.messages(conv_id)[-1]
    job = ReplyJob(1, MESSAGES, params, INFO, started=started)
    conv = store.create_conversation()
    app = store.add_message(conv.id, "assistant", "hi", status=STATUS_FOR_FINISH[reason],
                            provenance=provenance(job, _last(reason), STATUS_FOR_FINISH[reason],
                                                  None))
    assert server.prov is not None and app.prov is not None
    assert server.status == app.status == STATUS_FOR_FINISH[reason]
    return server.prov, app.prov, store


def test_app_and_server_record_the_same_fields(tmp_path: Path) -> None:
    server, app, store = _both(tmp_path, "stop")
    assert type(server) is type(app) is Provenance
    assert server.version == app.version == 2
    # Only who asked differs: the server records its request's source.
    assert server.source == {"api": "openai", "endpoint": "/v1/chat/completions",
                             "client": "127.0.0.1"}
    assert app.source is None
    assert dataclasses.replace(server, source=None, duration_s=None) == \
        dataclasses.replace(app, duration_s=None)
    assert set(server.to_dict()) - {"source"} == set(app.to_dict())
    assert server.model == app.model == ModelRecord.of(INFO)
    assert server.model is not None and (server.model.runtime, server.model.runtime_copy) == (
        "onnx", "c0ffee00")
    assert server.system_prompt == app.system_prompt == "be brief"
    store.close()


def test_finish_reason_is_the_stored_status_from_both_writers(tmp_path: Path) -> None:
    for reason, status in (("cancelled", "stopped"), ("length", "length")):
        server, app, store = _both(tmp_path / reason, reason)
        assert server.finish_reason == app.finish_reason == status
        store.close()
