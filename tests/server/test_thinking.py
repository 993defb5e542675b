"""Thinking models over the APIs, with the official clients: the reasoning comes back
apart (OpenAI ``reasoning_content``, Ollama ``thinking``), whole and streamed, and the
switch (``chat_template_kwargs`` / ``reasoning_effort`` / ``think``) reaches the template.

The model is a tiny scripted Llama whose chat template has Qwen3's ``enable_thinking``
switch and whose greedy reply is "<think>Paris fox</think>Berlin dog"."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import openai
import pytest

from slmchat.engine.generation.prompting import ChatMessage
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model.spec import ModelSpec
from slmchat.server.state import ServerConfig
from tests.server.fakes import Recording
from tests.server.live import Live, live_server
from tests.tinymodels import make_thinking_llama

ASK = [{"role": "user", "content": "Where is the fox?"}]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    from slmchat.engine.session import Engine

    folder = make_thinking_llama(tmp_path_factory.mktemp("thinking"))
    inner = Engine()
    inner.load(ModelSpec(path=str(folder), dtype="fp32", device="cpu"))
    return Recording(inner)


@pytest.fixture(scope="module")
def live(engine: Recording) -> Iterator[Live]:
    config = ServerConfig(defaults=SamplingParams(temperature=0, max_new_tokens=20))
    with live_server(engine, config) as server:
        yield server


@pytest.fixture
def oai(live: Live) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture
def oll(live: Live) -> ollama.Client:
    return ollama.Client(host=live.url, timeout=60)


def extra(obj: Any, name: str) -> Any:
    return (obj.model_extra or {}).get(name)


def test_openai_whole_reply_has_reasoning_content(oai: openai.OpenAI, live: Live) -> None:
    reply = oai.chat.completions.create(model=live.state.catalog.current, messages=ASK)
    message = reply.choices[0].message
    assert message.content == "Berlin dog"
    assert extra(message, "reasoning_content") == "Paris fox"
    assert reply.usage is not None and reply.usage.completion_tokens_details is not None
    reasoning = reply.usage.completion_tokens_details.reasoning_tokens
    assert reasoning is not None and 0 < reasoning < reply.usage.completion_tokens


def test_openai_stream_sends_reasoning_deltas_first(oai: openai.OpenAI, live: Live) -> None:
    stream = oai.chat.completions.create(model=live.state.catalog.current, messages=ASK,
                                         stream=True)
    kinds, thought, answer = [], "", ""
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        if extra(delta, "reasoning_content"):
            thought += extra(delta, "reasoning_content")
            kinds.append("r")
        if delta.content:
            answer += delta.content
            kinds.append("a")
    assert (thought, answer) == ("Paris fox", "Berlin dog")
    assert kinds.index("a") > max(i for i, k in enumerate(kinds) if k == "r")


@pytest.mark.parametrize(("body", "thinking"), [
    ({}, None),  # neither field: the template's default
    ({"chat_template_kwargs": {"enable_thinking": False}}, False),
    ({"chat_template_kwargs": {"enable_thinking": True}}, True),
    ({"chat_template_kwargs": {"other": 1}}, None),
    ({"reasoning_effort": "none"}, False),
    ({"reasoning_effort": "high"}, True),
    # The explicit template switch wins over an effort level.
    ({"reasoning_effort": "low", "chat_template_kwargs": {"enable_thinking": False}}, False),
])
def test_openai_switch_reaches_the_engine(oai: openai.OpenAI, live: Live, engine: Recording,
                                          body: dict[str, Any], thinking: bool | None) -> None:
    oai.chat.completions.create(model=live.state.catalog.current, messages=ASK, max_tokens=2,
                                extra_body=body)
    assert engine.thinking[-1] is thinking


def test_thinking_off_puts_the_empty_block_in_the_prompt(engine: Recording) -> None:
    params = SamplingParams(max_new_tokens=2)
    msgs = [ChatMessage("user", "x")]
    assert engine.preview_prompt(msgs, params, thinking=False).text.endswith(
        "<think>\n\n</think>\n\n")


@pytest.mark.parametrize("body", [
    {"reasoning_effort": "extreme"}, {"reasoning_effort": 3},
    {"chat_template_kwargs": {"enable_thinking": "no"}}, {"chat_template_kwargs": "off"},
])
def test_openai_bad_switch_is_a_400(live: Live, body: dict[str, Any]) -> None:
    r = httpx.post(f"{live.url}/v1/chat/completions", json={"messages": ASK, **body}, timeout=30)
    assert r.status_code == 400
    assert r.json()["error"]["message"]


def test_ollama_chat_returns_thinking(oll: ollama.Client, live: Live, engine: Recording) -> None:
    name = live.state.catalog.current
    reply = oll.chat(model=name, messages=ASK, think=True)
    assert (reply.message.thinking, reply.message.content) == ("Paris fox", "Berlin dog")
    assert engine.thinking[-1] is True
    parts = list(oll.chat(model=name, messages=ASK, stream=True))
    assert "".join(p.message.thinking or "" for p in parts) == "Paris fox"
    assert "".join(p.message.content or "" for p in parts) == "Berlin dog"
    assert engine.thinking[-1] is None
    oll.chat(model=name, messages=ASK, think=False, options={"num_predict": 2})
    assert engine.thinking[-1] is False
    oll.chat(model=name, messages=ASK, think="low", options={"num_predict": 2})
    assert engine.thinking[-1] is True


def test_ollama_generate_and_show(oll: ollama.Client, live: Live) -> None:
    name = live.state.catalog.current
    reply = oll.generate(model=name, prompt="Where is the fox?", think=True)
    assert (reply.thinking, reply.response) == ("Paris fox", "Berlin dog")
    streamed = list(oll.generate(model=name, prompt="Where is the fox?", stream=True))
    assert "".join(p.thinking or "" for p in streamed) == "Paris fox"
    assert "".join(p.response or "" for p in streamed) == "Berlin dog"
    assert "thinking" in (oll.show(name).capabilities or [])
    bad = httpx.post(f"{live.url}/api/chat", json={"model": name, "messages": ASK,
                                                   "think": "extreme"}, timeout=30)
    assert bad.status_code == 400 and "think" in bad.json()["error"]


def test_a_template_without_the_switch_ignores_it(tiny_engine) -> None:
    config = ServerConfig(defaults=SamplingParams(temperature=0, max_new_tokens=6))
    with live_server(tiny_engine, config) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0,
                               timeout=60)
        plain = client.chat.completions.create(model=server.state.catalog.current, messages=ASK)
        off = client.chat.completions.create(
            model=server.state.catalog.current, messages=ASK,
            extra_body={"chat_template_kwargs": {"enable_thinking": False}})
        assert off.choices[0].message.content == plain.choices[0].message.content
        assert extra(off.choices[0].message, "reasoning_content") is None
        shown = ollama.Client(host=server.url, timeout=60).show(server.state.catalog.current)
        assert "thinking" not in (shown.capabilities or [])

