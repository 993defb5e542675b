"""One generation at a time under load: FIFO queue, 429 past it, no cross-talk, no hang;
a client that leaves mid-stream frees the model within one token; clean shutdown."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import psutil
import pytest

from slmchat.engine.generation.sampling import SamplingParams
from slmchat.server.state import ServerConfig
from tests.server.fakes import CountingEngine, EchoEngine, echo_words
from tests.server.live import live_server

CLIENTS = 16
ROUNDS = 3  # requests per client: 48 in all


def _stream_one(base: str, tag: str) -> tuple[str, str]:
    """('ok', text) or ('busy', status); any other outcome fails the test."""
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0, timeout=30)
    try:
        parts = []
        reasons = []
        for chunk in client.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": tag}], max_tokens=12,
                stream=True):
            for c in chunk.choices:
                parts.append(c.delta.content or "")
                reasons.append(c.finish_reason)
        assert reasons[-1] in ("stop", "length")
        return "ok", "".join(parts)
    except openai.APIStatusError as exc:
        assert exc.status_code in (429, 503), exc
        assert int(exc.response.headers["retry-after"]) >= 1
        return "busy", str(exc.status_code)


def test_16_streaming_clients_queue_fairly_without_crosstalk() -> None:
    engine = EchoEngine(delay_s=0.004, reply_tokens=12)
    process = psutil.Process()
    with live_server(engine, ServerConfig(max_queue=4)) as live:
        _stream_one(live.url, "warm up")
        rss_before = process.memory_info().rss
        results: list[tuple[str, str, str]] = []
        lock = threading.Lock()

        def client(i: int) -> None:
            for r in range(ROUNDS):
                tag = f"client{i} round{r} words"
                kind, text = _stream_one(live.url, tag)
                with lock:
                    results.append((tag, kind, text))

        with ThreadPoolExecutor(CLIENTS) as pool:
            futures = [pool.submit(client, i) for i in range(CLIENTS)]
            for f in futures:
                f.result(timeout=120)  # none hangs
        assert not live.state.gate.busy and live.state.gate.waiting == 0
        rss_after = process.memory_info().rss
    assert len(results) == CLIENTS * ROUNDS
    done = [(tag, text) for tag, kind, text in results if kind == "ok"]
    assert done, "no request completed"
    assert any(kind == "busy" for _, kind, _ in results), "the queue limit never applied"
    for tag, text in done:  # each reply is its own prompt echoed, nobody else's words
        assert text == "".join(echo_words(tag, 12)), (tag, text)
    assert engine.max_active == 1
    assert rss_after - rss_before < 100 * 1024 * 1024


def test_waiting_requests_run_in_arrival_order() -> None:
    engine = EchoEngine(delay_s=0.001, reply_tokens=2, gate=threading.Event())
    with live_server(engine, ServerConfig(max_queue=8)) as live:
        order = [f"request{i}" for i in range(5)]
        with ThreadPoolExecutor(5) as pool:
            futures = []
            for i, tag in enumerate(order):
                futures.append(pool.submit(_stream_one, live.url, tag))
                deadline = time.monotonic() + 10
                # the next request is sent only once this one is running or queued
                while (len(engine.started) + live.state.gate.waiting) < i + 1:
                    assert time.monotonic() < deadline
                    time.sleep(0.005)
            assert engine.gate is not None
            engine.gate.set()
            assert all(f.result(timeout=30)[0] == "ok" for f in futures)
    assert engine.started == order


def test_queue_full_gets_429_with_retry_after() -> None:
    engine = EchoEngine(gate=threading.Event())
    with live_server(engine, ServerConfig(max_queue=0)) as live, \
            ThreadPoolExecutor(1) as pool:
        first = pool.submit(_stream_one, live.url, "first")
        deadline = time.monotonic() + 10
        while not engine.started:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        r = httpx.post(f"{live.url}/v1/chat/completions",
                       json={"messages": [{"role": "user", "content": "second"}]})
        assert r.status_code == 429
        assert int(r.headers["Retry-After"]) >= 1
        assert r.json()["error"]["code"] == "queue_full"
        o = httpx.post(f"{live.url}/api/chat", json={
            "model": "echo", "messages": [{"role": "user", "content": "third"}]})
        assert o.status_code == 429 and isinstance(o.json()["error"], str)
        assert engine.gate is not None
        engine.gate.set()
        assert first.result(timeout=30)[0] == "ok"


def _open_stream(port: int, body: dict) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    data = json.dumps(body).encode()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nContent-Length: "
                 + str(len(data)).encode() + b"\r\n\r\n" + data)
    return sock


def test_client_killed_mid_stream_frees_the_model_within_one_token(tiny_engine) -> None:
    engine = CountingEngine(tiny_engine, delay_s=0.02)
    config = ServerConfig(defaults=SamplingParams(temperature=0))
    with live_server(engine, config) as live:
        sock = _open_stream(live.port, {"messages": [{"role": "user", "content": "fox"}],
                                        "max_tokens": 200, "stream": True})
        seen = b""
        while seen.count(b"data: ") < 4:  # a few tokens arrived
            seen += sock.recv(65536)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # as a killed process's socket: reset, no goodbye
        assert engine.done.wait(30), "the generation did not stop"
        assert engine.finishes == ["cancelled"]
        assert engine.after_cancel[0] <= 1  # at most the token being computed
        # the model is free: the next request runs at once
        r = httpx.post(f"{live.url}/v1/chat/completions", timeout=30, json={
            "messages": [{"role": "user", "content": "fox"}], "max_tokens": 2})
        assert r.status_code == 200
        assert not live.state.gate.busy


def test_a_queued_client_that_leaves_gives_up_its_place() -> None:
    engine = EchoEngine(gate=threading.Event())
    with live_server(engine, ServerConfig(max_queue=1)) as live, ThreadPoolExecutor(1) as pool:
        first = pool.submit(_stream_one, live.url, "first")
        while not engine.started:
            time.sleep(0.005)
        sock = _open_stream(live.port, {"messages": [{"role": "user", "content": "gone"}]})
        deadline = time.monotonic() + 10
        while live.state.gate.waiting < 1:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        sock.close()
        while live.state.gate.waiting:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        assert engine.gate is not None
        engine.gate.set()
        assert first.result(timeout=30)[0] == "ok"
        assert engine.started == ["first"]  # the one that left never ran


@pytest.mark.parametrize("api", ["openai", "ollama"])
def test_shutdown_ends_streams_with_a_final_event(api: str) -> None:
    engine = EchoEngine(delay_s=0.05, reply_tokens=400)
    with live_server(engine) as live:
        lines: list[str] = []
        if api == "openai":
            url, body = "/v1/chat/completions", {"stream": True}
        else:
            url, body = "/api/chat", {"model": "echo"}
        body["messages"] = [{"role": "user", "content": "long reply"}]
        with httpx.stream("POST", live.url + url, json=body, timeout=30) as r:
            for line in r.iter_lines():
                if line:
                    lines.append(line)
                if len(lines) == 3:
                    live.server.stop()
        assert live.state.gate._closing  # new requests now get 503
    if api == "openai":
        assert lines[-1] == "data: [DONE]"
        final = json.loads(lines[-2].removeprefix("data: "))
        assert final["choices"][0]["finish_reason"] == "stop"
    else:
        final = json.loads(lines[-1])
        assert final["done"] is True and final["done_reason"] == "stop"
    assert len(lines) < 100  # it stopped early, not after 400 tokens
