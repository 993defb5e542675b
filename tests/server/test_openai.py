"""The official openai client against a live `slmchat serve` app on a tiny random Llama."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from slmchat.engine.generation.sampling import SamplingParams
from tests.server.live import HELLO, Live


@pytest.fixture
def client(live: Live) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_models_lists_the_loaded_model(client: openai.OpenAI, live: Live) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == [live.state.catalog.current]
    assert client.models.retrieve(ids[0]).id == ids[0]


def test_chat_non_stream_and_stream_agree(client: openai.OpenAI, live: Live) -> None:
    model = live.state.catalog.current
    whole = client.chat.completions.create(model=model, messages=HELLO, max_tokens=8,
                                           temperature=0)
    assert whole.object == "chat.completion"
    choice = whole.choices[0]
    assert choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length")
    assert whole.usage is not None
    assert whole.usage.prompt_tokens > 0
    assert 0 < whole.usage.completion_tokens <= 8
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens

    parts, reasons, usage = [], [], None
    for chunk in client.chat.completions.create(model=model, messages=HELLO, max_tokens=8,
                                                temperature=0, stream=True,
                                                stream_options={"include_usage": True}):
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            parts.append(c.delta.content or "")
            reasons.append(c.finish_reason)
    assert "".join(parts) == choice.message.content
    assert reasons[-1] == choice.finish_reason and all(r is None for r in reasons[:-1])
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens


def test_max_tokens_gives_length_and_exact_count(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="", messages=HELLO, max_completion_tokens=3,
                                       temperature=0)
    if r.choices[0].finish_reason == "length":
        assert r.usage is not None and r.usage.completion_tokens == 3
    else:
        assert r.usage is not None and r.usage.completion_tokens < 3


def test_completions_raw_prompt_and_echo(client: openai.OpenAI) -> None:
    r = client.completions.create(model="", prompt="Paris is the capital of", max_tokens=5,
                                  temperature=0)
    assert r.object == "text_completion"
    assert r.usage is not None and r.usage.completion_tokens <= 5
    echoed = client.completions.create(model="", prompt="Paris is", max_tokens=5,
                                       temperature=0, echo=True)
    assert echoed.choices[0].text.startswith("Paris is")
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="", prompt="Paris is the capital of", max_tokens=5, temperature=0, stream=True)
        if c.choices)
    assert streamed == r.choices[0].text


def test_seed_reproduces_a_sampled_reply(client: openai.OpenAI) -> None:
    def ask(seed: int) -> str:
        r = client.chat.completions.create(model="", messages=HELLO, max_tokens=10,
                                           temperature=1.5, top_p=1.0, seed=seed)
        return r.choices[0].message.content or ""

    first = ask(7)
    assert ask(7) == first
    assert any(ask(s) != first for s in (8, 9, 10))


def test_stop_string_ends_the_reply_before_it(client: openai.OpenAI) -> None:
    base = client.completions.create(model="", prompt="The quick brown", max_tokens=12,
                                     temperature=0).choices[0].text
    if len(base) < 4:
        pytest.skip("the tiny model's reply is too short to cut")
    stop = base[2:4]
    r = client.completions.create(model="", prompt="The quick brown", max_tokens=12,
                                  temperature=0, stop=[stop])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].text == base[: base.index(stop)]


def test_growing_conversation_reuses_the_kv_cache(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(model="", messages=HELLO, max_tokens=6, temperature=0)
    history = [*HELLO, {"role": "assistant", "content": first.choices[0].message.content},
               {"role": "user", "content": "jumps over"}]
    second = client.chat.completions.create(model="", messages=history, max_tokens=6,
                                            temperature=0)
    assert second.usage is not None and second.usage.prompt_tokens_details is not None
    assert second.usage.prompt_tokens_details.cached_tokens > 0



def test_cache_prompt_false_gives_a_fresh_engines_reply(client: openai.OpenAI,
                                                        tiny_engine) -> None:
    """Issue 26: a reply over a reused KV prefix may differ from a fresh prefill's; with
    cache_prompt false nothing is reused and the reply is exactly a fresh engine's, and
    system_fingerprint tells the two apart ("-kv" when the prompt was reused)."""
    from slmchat.engine.generation.prompting import ChatMessage

    first = client.chat.completions.create(model="", messages=HELLO, max_tokens=6, temperature=0)
    history = [*HELLO, {"role": "assistant", "content": first.choices[0].message.content},
               {"role": "user", "content": "jumps over"}]
    reused = client.chat.completions.create(model="", messages=history, max_tokens=6,
                                            temperature=0)
    assert reused.usage is not None and reused.usage.prompt_tokens_details is not None
    assert reused.usage.prompt_tokens_details.cached_tokens > 0
    fresh = client.chat.completions.create(model="", messages=history, max_tokens=6,
                                           temperature=0, extra_body={"cache_prompt": False})
    assert fresh.usage is not None and fresh.usage.prompt_tokens_details is not None
    assert fresh.usage.prompt_tokens_details.cached_tokens == 0
    assert reused.system_fingerprint == f"{fresh.system_fingerprint}-kv"
    assert fresh.system_fingerprint is not None and not fresh.system_fingerprint.endswith("-kv")

    own = tiny_engine.companion()  # the same weights, an empty KV cache of its own
    params = SamplingParams(temperature=0, max_new_tokens=6)
    messages = [ChatMessage(m["role"], m["content"]) for m in history]
    expected = "".join(c.text for c in own.stream_chat(messages, params))
    assert fresh.choices[0].message.content == expected

    streamed = list(client.chat.completions.create(
        model="", messages=history, max_tokens=6, temperature=0, stream=True,
        stream_options={"include_usage": True}, extra_body={"cache_prompt": False}))
    assert {c.system_fingerprint for c in streamed} == {fresh.system_fingerprint}
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == expected
    usage = streamed[-1].usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0


@pytest.mark.parametrize("body, expected", [
    ({}, True), ({"cache_prompt": False}, False), ({"cache_prompt": True}, True)])
def test_cache_prompt_is_read_from_openai_bodies(body: dict, expected: bool) -> None:
    from slmchat.server.openai_api import parse_chat, parse_completion

    assert parse_chat({"messages": HELLO, **body}).cache_prompt is expected
    assert parse_completion({"prompt": "x", **body}).cache_prompt is expected


def test_cache_prompt_must_be_a_boolean(live: Live) -> None:
    r = httpx.post(f"{live.url}/v1/chat/completions",
                   json={"messages": HELLO, "cache_prompt": "no"}, timeout=30)
    assert r.status_code == 400 and "cache_prompt" in r.text


BAD = [
    ("bad JSON", b'{"messages": [', 400, None),
    ("not an object", b"[1, 2]", 400, None),
    ("unknown model", {"model": "gpt-4o", "messages": HELLO}, 404, "model"),
    ("negative max_tokens", {"messages": HELLO, "max_tokens": -5}, 400, "max_tokens"),
    ("zero max_completion_tokens", {"messages": HELLO, "max_completion_tokens": 0}, 400,
     "max_completion_tokens"),
    ("max_tokens over the context", {"messages": HELLO, "max_tokens": 100000}, 400, "max_tokens"),
    ("n=2", {"messages": HELLO, "n": 2}, 400, "n"),
    ("temperature out of range", {"messages": HELLO, "temperature": 9}, 400, "temperature"),
    ("frequency penalty", {"messages": HELLO, "frequency_penalty": 0.5}, 400, "frequency_penalty"),
    ("tools", {"messages": HELLO, "tools": [{"type": "function"}]}, 400, "tools[0]"),
    ("no messages", {"messages": []}, 400, "messages"),
    ("unknown role", {"messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role"),
    ("image part", {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400,
     "messages[0].content"),
    ("seed not an int", {"messages": HELLO, "seed": "x"}, 400, "seed"),
    ("NUL in a model path", {"model": "a/\u0000b", "messages": HELLO}, 404, "model"),
    ("100,000 nested lists", b"[" * 100_000, 400, None),
    ("lone surrogate", {"messages": [{"role": "user", "content": "\ud800 hi"}]}, 400,
     "messages[0].content"),
    ("lone surrogate in a prompt part", {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "\udfff"}]}]}, 400, "messages[0].content[0].text"),
]


@pytest.mark.parametrize(("name", "body", "status", "param"), BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_a_clear_openai_error(live: Live, name: str, body: object, status: int,
                                               param: str | None) -> None:
    url = f"{live.url}/v1/chat/completions"
    # json.dumps escapes a lone surrogate as JSON allows (httpx's json= cannot encode it)
    r = httpx.post(url, content=body if isinstance(body, bytes) else json.dumps(body))
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["message"] and error["type"]
    assert "Traceback" not in r.text
    if param is not None:
        assert error["param"] == param
    if name == "unknown model":
        assert live.state.catalog.current in error["message"]  # lists the loadable models


def test_completions_and_model_routes_refuse_what_the_tokenizer_or_a_path_cannot_take(
        live: Live) -> None:
    r = httpx.post(f"{live.url}/v1/completions", content=json.dumps({"prompt": "\ud800 hi"}))
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    r = httpx.get(f"{live.url}/v1/models/a%2F%00")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_errors_through_the_openai_client(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert nf.value.body["code"] == "model_not_found"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="", messages=HELLO, n=2)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="", messages=HELLO, max_tokens=-1)


def test_a_5_mb_body_gets_413(live: Live, client: openai.OpenAI) -> None:
    r = httpx.post(f"{live.url}/v1/chat/completions",
                   json={"messages": [{"role": "user", "content": "x" * (5 << 20)}]})
    assert r.status_code == 413
    assert "4 MB" in r.json()["error"]["message"]
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model="", messages=[{"role": "user",
                                                            "content": "y" * (5 << 20)}])
    assert exc.value.status_code == 413


def test_raw_prompt_longer_than_the_context_is_refused(live: Live) -> None:
    r = httpx.post(f"{live.url}/v1/completions",
                   json={"prompt": "fox " * 400, "max_tokens": 8})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "context_length_exceeded"


def test_long_chat_is_trimmed_not_refused(client: openai.OpenAI) -> None:
    history = []
    for i in range(30):
        history += [{"role": "user", "content": f"question {i} about the quick brown fox"},
                    {"role": "assistant", "content": "Paris is the capital of France."}]
    history.append({"role": "user", "content": "last"})
    r = client.chat.completions.create(model="", messages=history, max_tokens=8)
    assert r.usage is not None and r.usage.prompt_tokens + 8 <= 256


def test_unknown_route_and_method(live: Live) -> None:
    r = httpx.get(f"{live.url}/v1/nothing")
    assert r.status_code == 404 and "no such endpoint" in r.json()["error"]["message"]
    r = httpx.get(f"{live.url}/v1/chat/completions")
    assert r.status_code == 405 and r.json()["error"]["message"]


def test_predicted_outputs_give_the_same_reply_and_count_the_kept_guess(
        client: openai.OpenAI, live: Live) -> None:
    """OpenAI's Predicted Outputs: the guess is the speculative draft (the tiny model runs
    on transformers, which verifies drafts exactly), the reply is the one without it, and
    usage says how many guessed tokens the reply kept and dropped, streamed or not."""
    model = live.state.catalog.current
    plain = client.chat.completions.create(model=model, messages=HELLO, max_tokens=12,
                                           temperature=0)
    text = plain.choices[0].message.content or ""
    guessed = client.chat.completions.create(
        model=model, messages=HELLO, max_tokens=12, temperature=0,
        prediction={"type": "content", "content": text})
    assert guessed.choices[0].message.content == text
    details = guessed.usage.completion_tokens_details if guessed.usage else None
    assert details is not None and details.accepted_prediction_tokens is not None
    assert details.accepted_prediction_tokens >= 6, details
    parts, usage = [], None
    for chunk in client.chat.completions.create(
            model=model, messages=HELLO, max_tokens=12, temperature=0, stream=True,
            stream_options={"include_usage": True},
            prediction={"type": "content", "content": [{"type": "text", "text": "zebra " * 8}]}):
        usage = chunk.usage or usage
        parts.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(parts) == text
    assert usage is not None and usage.completion_tokens_details is not None
    # sent with every usage (the client reads None when a server leaves it out)
    assert usage.completion_tokens_details.rejected_prediction_tokens is not None


@pytest.mark.parametrize("prediction", [
    "just text", {"type": "file", "content": "x"}, {"type": "content", "content": 3},
    {"type": "content", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
])
def test_a_malformed_prediction_is_a_400_naming_it(client: openai.OpenAI, prediction) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="", messages=HELLO, max_tokens=2,
                                       prediction=prediction)  # type: ignore[arg-type]
    assert err.value.body is not None and err.value.body.get("param") == "prediction"
