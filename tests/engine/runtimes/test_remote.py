"""The remote runtime against real HTTP servers on loopback: ``slmchat serve`` (both of
its APIs, the echo engine behind it) and a stub that answers 401, 429, 500, hangs before
the first byte and drops the stream half way. Each failure is one line naming the
profile, and the text that arrived stays."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from slmchat.engine.generation.decode import CancelToken, GenerationChunk
from slmchat.engine.generation.prompting import ChatMessage
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model import remote, remote_http
from slmchat.engine.model.remote import RemoteProfile
from slmchat.engine.model.spec import ModelSpec
from slmchat.engine.runtimes.remote import Target
from slmchat.engine.session import Engine
from slmchat.errors import InvalidParameterError, ModelLoadError
from tests.remotekit import OK_PIECES, stub_server
from tests.server.fakes import EchoEngine, echo_words
from tests.server.live import live_server

HELLO = [ChatMessage("system", "Be brief."), ChatMessage("user", "hello there")]


@pytest.fixture(autouse=True)
def _no_profiles() -> Iterator[None]:
    yield
    remote.use_profiles([])


def _engine(profile: RemoteProfile, model: str) -> Engine:
    remote.use_profiles([profile])
    engine = Engine()
    engine.load(ModelSpec(path=remote.remote_path(profile.name, model)))
    return engine


def _reply(engine: Engine, cancel: CancelToken | None = None,
           params: SamplingParams | None = None) -> tuple[str, GenerationChunk]:
    chunks = list(engine.stream_chat(HELLO, params or SamplingParams(max_new_tokens=6, seed=3),
                                     cancel))
    return "".join(c.text for c in chunks), chunks[-1]


@pytest.mark.parametrize("kind", ["openai", "ollama"])
def test_chat_through_slmchat_serve(kind: str) -> None:
    echo = EchoEngine(reply_tokens=6)
    with live_server(echo) as live:
        prof = RemoteProfile("lab", live.url, kind=kind)  # type: ignore[arg-type]
        assert [m.id for m in remote.list_models(prof)] == ["echo"]
        engine = _engine(prof, "echo")
        info = engine.info
        assert info is not None
        assert (info.name, info.kind, info.runtime, info.device) == (
            "lab:echo", "remote", "remote", f"127.0.0.1:{live.port}")
        assert "remote" in info.label
        text, last = _reply(engine)
    assert text == "".join(echo_words("hello there", 6))
    assert last.finish_reason == "length" and last.error is None
    assert last.new_tokens == 6  # the server's count
    assert last.ttft_s is not None and last.ttft_s > 0 and last.decode_tps > 0
    assert last.seed == 3
    if kind == "openai":
        assert last.served_by and last.served_by.startswith("slmchat-")  # system_fingerprint
    else:
        assert info.fingerprint.startswith("ollama ")  # /api/version
    # the messages went as they are: the server saw the system prompt and the user turn
    assert echo.started == ["hello there"]


def test_the_prompt_preview_is_the_messages_sent() -> None:
    with live_server(EchoEngine()) as live:
        engine = _engine(RemoteProfile("lab", live.url), "echo")
        prompt = engine.preview_prompt(HELLO, SamplingParams(), detail=True)
    assert prompt.format == "remote" and prompt.input_ids == []
    assert '"role": "system"' in prompt.text and "hello there" in prompt.text
    assert prompt.kept == tuple(HELLO) and len(prompt.message_tokens) == 2


def test_a_model_the_server_does_not_list_is_one_line_and_the_old_model_stays() -> None:
    with live_server(EchoEngine()) as live:
        engine = _engine(RemoteProfile("lab", live.url), "echo")
        with pytest.raises(ModelLoadError, match=r"^lab: .* does not list the model 'nope' "
                                                 r"\(it lists: echo\)$"):
            engine.load(ModelSpec(path="remote://lab/nope"))
        assert engine.info is not None and engine.info.name == "lab:echo"
    with pytest.raises(ModelLoadError, match="no remote profile named 'gone'"):
        engine.load(ModelSpec(path="remote://gone/echo"))


def test_stub_streams_usage_and_fingerprint() -> None:
    with stub_server(key="sekret-123") as stub, pytest.MonkeyPatch.context() as mp:
        mp.setenv("STUB_KEY", "sekret-123")
        engine = _engine(RemoteProfile("stub", stub.url, api_key_env="STUB_KEY"), "ok")
        text, last = _reply(engine, params=SamplingParams(max_new_tokens=9, seed=5, top_k=0,
                                                          repetition_penalty=1.0))
        sent = stub.requests[-1]
    assert text == "".join(OK_PIECES)
    assert (last.finish_reason, last.prompt_tokens, last.new_tokens) == ("stop", 11, 4)
    assert last.served_by == "fp_stub42"
    body = sent["body"]
    assert sent["auth"] == "Bearer sekret-123"
    assert body["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "hello there"}]
    assert body["max_tokens"] == 9 and body["seed"] == 5 and body["stream"] is True
    assert "top_k" not in body and "repetition_penalty" not in body  # neutral: not sent


@pytest.mark.parametrize(("model", "line"), [
    ("unauthorized", r"^stub: 127\.0\.0\.1:\d+ refused the key \(401: Incorrect API key "
                     r"provided\); the profile names no api_key_env$"),
    ("busy", r"^stub: 127\.0\.0\.1:\d+ is rate limiting requests \(429, retry after 7 s\): "
             r"Rate limit reached$"),
    ("broken", r"^stub: 127\.0\.0\.1:\d+ failed with 500: CUDA out of memory$"),
    ("gone", r"^stub: 127\.0\.0\.1:\d+ has no model 'gone' \(404: The model `gone` does not "
             r"exist\.\)$"),
])
def test_refusals_are_one_line_naming_the_profile(model: str, line: str) -> None:
    with stub_server() as stub:
        prof = RemoteProfile("stub", stub.url)
        engine = _engine(prof, "ok")
        assert engine.loaded is not None
        # a model the server stopped listing after the load ("gone") is a 404 on the reply
        engine.loaded.model = Target(prof, model)
        text, last = _reply(engine)
        attempts = len([r for r in stub.requests if r["body"].get("model") == model])
    assert text == "" and last.finish_reason == "error"
    assert last.error is not None and "\n" not in last.error
    assert re.match(line, last.error), last.error
    assert attempts == 1  # only connection failures are retried


def test_a_stream_dropped_half_way_keeps_what_arrived() -> None:
    with stub_server() as stub:
        engine = _engine(RemoteProfile("stub", stub.url), "drop")
        text, last = _reply(engine)
    assert text == "".join(OK_PIECES[:2])
    assert last.finish_reason == "error"
    assert last.error is not None and last.error.startswith("stub: ")
    assert "dropped" in last.error and "\n" not in last.error


def test_a_server_that_hangs_times_out_in_one_line() -> None:
    with stub_server() as stub:
        engine = _engine(RemoteProfile("stub", stub.url, timeout_s=1.0), "hang")
        start = time.monotonic()
        text, last = _reply(engine)
        took = time.monotonic() - start
    assert text == "" and last.finish_reason == "error"
    assert last.error is not None and last.error.startswith("stub: 127.0.0.1:")
    assert "sent nothing for 1 s (timeout)" in last.error
    assert took < 10


def test_cancel_closes_a_stream_that_is_waiting() -> None:
    with stub_server() as stub:
        engine = _engine(RemoteProfile("stub", stub.url, timeout_s=60.0), "hang")
        cancel = CancelToken()
        threading.Timer(0.5, cancel.cancel).start()
        start = time.monotonic()
        _, last = _reply(engine, cancel)
        took = time.monotonic() - start
    assert last.finish_reason == "cancelled" and last.error is None
    assert took < 5  # not the 60 s read timeout: the socket was shut down


def test_engine_cancel_stops_the_remote_reply() -> None:
    with stub_server() as stub:
        engine = _engine(RemoteProfile("stub", stub.url, timeout_s=60.0), "hang")
        threading.Timer(0.5, engine.cancel).start()
        _, last = _reply(engine, CancelToken())
    assert last.finish_reason == "cancelled"


def _closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_connection_failures_are_retried_with_backoff_then_one_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote_http, "BACKOFF_S", (0.05, 0.1, 0.2))
    prof = RemoteProfile("dead", f"http://127.0.0.1:{_closed_port()}/v1")
    post = remote_http.StreamedPost(prof, "/chat/completions", {"model": "x"}, lambda: False)
    with pytest.raises(remote_http.RemoteError, match=r"^dead: cannot connect to 127\.0\.0\.1:\d+"):
        list(post.lines())
    assert post.attempts == 4
    # and a load names the profile in one line too (listing is not retried)
    remote.use_profiles([prof])
    with pytest.raises(ModelLoadError, match=r"^dead: cannot connect to 127\.0\.0\.1:\d+ \("):
        Engine().load(ModelSpec(path="remote://dead/x"))


def test_a_key_variable_that_is_not_set_is_said_before_any_request(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    prof = RemoteProfile("lab", "http://127.0.0.1:9/v1", api_key_env="NOT_SET_ANYWHERE")
    with pytest.raises(remote_http.RemoteError, match=r"NOT_SET_ANYWHERE \(api_key_env\) is not set"):
        remote.list_models(prof)


def test_constraints_a_remote_cannot_follow_are_refused() -> None:
    from slmchat.engine.generation.constraints import Constraint

    with stub_server() as stub:
        engine = _engine(RemoteProfile("stub", stub.url), "ok")
        with pytest.raises(InvalidParameterError, match="--regex runs on local models"):
            list(engine.stream_chat(HELLO, SamplingParams(), constraint=Constraint("regex", "a+")))
        list(engine.stream_chat(HELLO, SamplingParams(), constraint=Constraint("json")))
        assert stub.requests[-1]["body"]["response_format"] == {"type": "json_object"}


def test_profiles_paths_and_names() -> None:
    prof = RemoteProfile("lab", "http://gpu-box:8000")
    assert prof.api_base == "http://gpu-box:8000/v1" and prof.host == "gpu-box:8000"
    assert not prof.loopback and RemoteProfile("l", "http://[::1]:8/v1").loopback
    assert RemoteProfile("o", "http://localhost:11434/", kind="ollama").api_base == \
        "http://localhost:11434"
    assert remote.parse_path("remote://lab/org/model:7b") == ("lab", "org/model:7b")
    assert remote.host_is_loopback("127.0.0.1:8000") and remote.host_is_loopback("[::1]:80")
    assert not remote.host_is_loopback("gpu-box:8000")
    remote.use_profiles([prof])
    assert remote.resolve_typed("lab:qwen2.5:7b") == "remote://lab/qwen2.5:7b"
    assert remote.resolve_typed("lab: qwen2.5:7b") == "remote://lab/qwen2.5:7b"
    assert remote.resolve_typed("other:qwen") is None  # not a profile: a local name
    assert remote.url_problem("http://me:pw@host/v1") is not None
    assert remote.url_problem("ftp://host") is not None


@pytest.mark.parametrize("kind", ["openai", "ollama"])
def test_a_raw_prompt_goes_to_the_completion_endpoint(kind: str) -> None:
    echo = EchoEngine()
    with live_server(echo) as live:
        engine = _engine(RemoteProfile("lab", live.url, kind=kind), "echo")  # type: ignore[arg-type]
        chunks = list(engine.stream_chat([ChatMessage("user", "once upon")],
                                         SamplingParams(max_new_tokens=3), mode="raw"))
    assert "".join(c.text for c in chunks) == "".join(echo_words("once upon", 3))
    assert chunks[-1].finish_reason == "length"


def test_raw_and_chat_requests_go_to_their_endpoints() -> None:
    with stub_server() as stub:
        engine = _engine(RemoteProfile("stub", stub.url), "ok")
        list(engine.stream_chat([ChatMessage("user", "once")], SamplingParams(), mode="raw"))
        list(engine.stream_chat(HELLO, SamplingParams()))
    raw, chat = stub.requests[-2:]
    assert raw["path"] == "/v1/completions" and raw["body"]["prompt"] == "once"
    assert "messages" not in raw["body"]
    assert chat["path"] == "/v1/chat/completions" and "prompt" not in chat["body"]
