"""The official ollama client against a live `slmchat serve` app on a tiny random Llama."""

from __future__ import annotations

import json

import httpx
import ollama
import pytest

from tests.server.live import HELLO, Live


@pytest.fixture
def client(live: Live) -> ollama.Client:
    return ollama.Client(host=live.url, timeout=60)


def _stats_ok(final: ollama.ChatResponse | ollama.GenerateResponse, limit: int) -> None:
    assert final.done is True
    assert final.done_reason in ("stop", "length")
    assert final.prompt_eval_count and final.prompt_eval_count > 0
    assert final.eval_count is not None and 0 < final.eval_count <= limit
    assert final.eval_duration is not None and final.eval_duration >= 0
    assert final.total_duration is not None and final.total_duration >= final.eval_duration


def test_tags_version_show_ps(client: ollama.Client, live: Live) -> None:
    name = live.state.catalog.current
    assert [m.model for m in client.list().models] == [name]
    assert httpx.get(f"{live.url}/api/version").json()["version"]
    shown = client.show(f"{name}:latest")
    assert "<|im_start|>" in (shown.template or "")
    assert "num_ctx 256" in (shown.parameters or "")
    assert shown.modelinfo is not None and shown.modelinfo["llama.context_length"] == 256
    # a chat model answers `tools` (a constrained call), so oterm and others may offer them
    assert shown.capabilities is not None and "tools" in shown.capabilities
    assert [m.model for m in client.ps().models] == [name]


def test_chat_stream_and_non_stream(client: ollama.Client, live: Live) -> None:
    name = live.state.catalog.current
    options = {"temperature": 0, "num_predict": 6}
    whole = client.chat(model=name, messages=HELLO, stream=False, options=options)
    assert whole.message.role == "assistant"
    _stats_ok(whole, 6)
    parts = list(client.chat(model=name, messages=HELLO, stream=True, options=options))
    assert all(not p.done for p in parts[:-1])
    _stats_ok(parts[-1], 6)
    assert "".join(p.message.content or "" for p in parts) == whole.message.content
    assert parts[-1].eval_count == whole.eval_count


def test_generate_stream_and_non_stream_raw_and_system(client: ollama.Client, live: Live) -> None:
    name = live.state.catalog.current
    options = {"temperature": 0, "num_predict": 5, "seed": 3, "top_k": 10, "top_p": 0.5,
               "repeat_penalty": 1.0, "num_ctx": 4096}
    whole = client.generate(model=name, prompt="The quick brown", options=options, stream=False)
    _stats_ok(whole, 5)
    streamed = list(client.generate(model=name, prompt="The quick brown", options=options,
                                    stream=True))
    _stats_ok(streamed[-1], 5)
    assert "".join(p.response or "" for p in streamed) == whole.response
    raw = client.generate(model=name, prompt="Paris is", raw=True, options=options)
    _stats_ok(raw, 5)
    system = client.generate(model=name, prompt="Hi", system="Be brief.", options=options)
    assert system.prompt_eval_count and system.prompt_eval_count > raw.prompt_eval_count


def test_stop_option_and_seed(client: ollama.Client, live: Live) -> None:
    name = live.state.catalog.current
    sampled = {"temperature": 1.5, "top_p": 1.0, "num_predict": 10, "seed": 11}
    a = client.chat(model=name, messages=HELLO, options=sampled, stream=False)
    b = client.chat(model=name, messages=HELLO, options=sampled, stream=False)
    assert a.message.content == b.message.content
    text = a.message.content or ""
    if len(text) >= 4:
        cut = client.chat(model=name, messages=HELLO, options={**sampled, "stop": [text[2:4]]},
                          stream=False)
        assert cut.message.content == text[: text.index(text[2:4])]
        assert cut.done_reason == "stop"


def test_load_only_requests(client: ollama.Client, live: Live) -> None:
    r = client.generate(model=live.state.catalog.current, prompt="")
    assert r.done and r.done_reason == "load"
    r2 = httpx.post(f"{live.url}/api/chat", json={"model": live.state.catalog.current,
                                                  "messages": []}).json()
    assert r2["done_reason"] == "load"


def test_errors_are_ollama_shaped(client: ollama.Client, live: Live) -> None:
    with pytest.raises(ollama.ResponseError) as exc:
        client.chat(model="llama3:8b", messages=HELLO)
    assert exc.value.status_code == 404
    assert live.state.catalog.current in exc.value.error
    r = httpx.post(f"{live.url}/api/chat", content=b"{nope")
    assert r.status_code == 400 and isinstance(r.json()["error"], str)
    r = httpx.post(f"{live.url}/api/generate", json={"model": "", "prompt": "x", "format": "yaml"})
    assert r.status_code == 400 and "format" in r.json()["error"]
    r = httpx.post(f"{live.url}/api/generate",
                   json={"model": "", "prompt": "x", "options": {"temperature": -1}})
    assert r.status_code == 400 and "temperature" in r.json()["error"]
    r = httpx.post(f"{live.url}/api/show", json={})
    assert r.status_code == 400


def test_bad_input_gets_an_ollama_error_not_a_500(live: Live) -> None:
    cases = [
        ("/api/show", {"model": "a/\u0000b"}, 404),  # Path.resolve: ValueError
        ("/api/chat", {"model": "a/\u0000b", "messages": HELLO}, 404),
        ("/api/chat", {"messages": [{"role": "user", "content": "\ud800 hi"}]}, 400),
        ("/api/generate", {"prompt": "\ud800 hi"}, 400),
        ("/api/chat", b"[" * 100_000, 400),  # RecursionError in json.loads
    ]
    for path, body, status in cases:
        r = httpx.post(f"{live.url}{path}",
                       content=body if isinstance(body, bytes) else json.dumps(body))
        assert r.status_code == status, (path, body, r.text)
        assert isinstance(r.json()["error"], str) and "Traceback" not in r.text


@pytest.mark.parametrize("body, expected", [
    ({}, True), ({"cache_prompt": False}, False), ({"options": {"cache_prompt": False}}, False),
    ({"cache_prompt": True, "options": {"cache_prompt": True}}, True)])
def test_cache_prompt_is_read_at_the_top_or_in_options(body: dict, expected: bool) -> None:
    """llama-server's cache_prompt: false, no KV reuse (Engine.stream_chat reuse_cache)."""
    from slmchat.server.ollama_api import _options
    from slmchat.server.requests import Fields

    assert _options(Fields({"messages": HELLO, **body}))["cache_prompt"] is expected
