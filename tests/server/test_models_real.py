"""Model names and swaps (echo engine), and once through the real default model."""

from __future__ import annotations

import httpx
import ollama
import openai
import pytest

from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model.discovery import ModelEntry
from slmchat.engine.model.spec import ModelSpec
from slmchat.server.state import ServerConfig
from tests.server.fakes import EchoEngine
from tests.server.live import live_server

OTHER = ModelEntry(name="other-model", path="/models/other-model", source="models",
                   format="safetensors", architecture="LlamaForCausalLM", n_params=1000)
BROKEN = ModelEntry(name="broken", path="/models/broken", source="models", format="safetensors",
                    problem="truncated weights")


def test_a_request_for_another_local_model_swaps_it_in() -> None:
    engine = EchoEngine()
    config = ServerConfig(base_spec=ModelSpec(path="/models/echo"))  # what it was started with
    with live_server(engine, config, discover=lambda: [OTHER, BROKEN]) as live:
        client = openai.OpenAI(base_url=f"{live.url}/v1", api_key="x", max_retries=0)
        assert [m.id for m in client.models.list()] == ["echo", "other-model"]  # broken hidden
        r = client.chat.completions.create(model="other-model", max_tokens=3,
                                           messages=[{"role": "user", "content": "hi"}])
        assert r.model == "other-model"
        assert engine.info is not None and engine.info.path == "/models/other-model"
        tags = ollama.Client(host=live.url).list()
        assert [m.model for m in tags.models] == ["other-model", "echo"]
        back = client.chat.completions.create(model="echo", max_tokens=3,  # the start model
                                              messages=[{"role": "user", "content": "hi"}])
        assert back.model == "echo" and engine.info.path == "/models/echo"
        with pytest.raises(openai.NotFoundError) as exc:
            client.chat.completions.create(model="broken", messages=[{"role": "user",
                                                                       "content": "hi"}])
        assert "other-model" in str(exc.value)


def test_no_swap_serves_only_the_loaded_model() -> None:
    with live_server(EchoEngine(), ServerConfig(allow_swap=False),
                     discover=lambda: [OTHER]) as live:
        r = httpx.post(f"{live.url}/v1/chat/completions", json={
            "model": "other-model", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 404 and "--no-swap" in r.json()["error"]["message"]


@pytest.mark.realmodel
def test_default_model_answers_through_both_clients(default_engine) -> None:
    config = ServerConfig(defaults=SamplingParams(temperature=0, max_new_tokens=24))
    question = [{"role": "user", "content": "What is the capital of France?"}]
    with live_server(default_engine, config) as live:
        oa = openai.OpenAI(base_url=f"{live.url}/v1", api_key="x", max_retries=0, timeout=120)
        whole = oa.chat.completions.create(model="SmolLM2-135M-Instruct", messages=question)
        assert "Paris" in (whole.choices[0].message.content or "")
        streamed = "".join(c.choices[0].delta.content or "" for c in oa.chat.completions.create(
            model="SmolLM2-135M-Instruct", messages=question, stream=True) if c.choices)
        assert streamed == whole.choices[0].message.content
        ol = ollama.Client(host=live.url, timeout=120)
        reply = ol.chat(model="SmolLM2-135M-Instruct:latest", messages=question,
                        options={"temperature": 0, "num_predict": 24})
        assert "Paris" in (reply.message.content or "")
        assert reply.eval_count and reply.prompt_eval_count
        shown = ol.show("SmolLM2-135M-Instruct")
        assert "im_start" in (shown.template or "")


@pytest.mark.realmodel
def test_official_clients_get_structured_output_from_the_default_model(default_engine) -> None:
    """openai's chat.completions.parse with a pydantic model (json_schema, strict) and the
    ollama client's format= with a JSON schema: the default model's reply validates."""
    from pydantic import BaseModel, Field

    class Place(BaseModel):
        city: str = Field(max_length=24)
        country: str = Field(max_length=24)

    config = ServerConfig(defaults=SamplingParams(temperature=0, max_new_tokens=80))
    question = [{"role": "user", "content": "Where is the Eiffel tower?"}]
    with live_server(default_engine, config) as live:
        oa = openai.OpenAI(base_url=f"{live.url}/v1", api_key="x", max_retries=0, timeout=120)
        parsed = oa.chat.completions.parse(model="SmolLM2-135M-Instruct", messages=question,
                                           response_format=Place)
        place = parsed.choices[0].message.parsed
        assert isinstance(place, Place) and place.city
        whole = oa.chat.completions.create(model="SmolLM2-135M-Instruct", messages=question,
                                           response_format={"type": "json_object"})
        assert isinstance(__import__("json").loads(whole.choices[0].message.content or ""), dict)
        reply = ollama.Client(host=live.url).chat(model="SmolLM2-135M-Instruct", messages=question,
                                                  format=Place.model_json_schema())
        assert Place.model_validate_json(reply.message.content or "").country
        with pytest.raises(openai.BadRequestError):
            oa.chat.completions.create(model="SmolLM2-135M-Instruct", messages=question,
                                       response_format={"type": "json_schema", "json_schema": {
                                           "name": "x", "schema": {"type": "object", "properties": 5}}})


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city now",
    "parameters": {"type": "object", "additionalProperties": False, "required": ["city"],
                   "properties": {"city": {"type": "string", "maxLength": 30},
                                  "unit": {"enum": ["celsius", "fahrenheit"]}}}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The time in a timezone",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 30}},
                   "required": ["zone"]}}}


@pytest.mark.realmodel
def test_official_clients_run_a_tool_call_loop_on_the_default_model(default_engine) -> None:
    """openai's tools/tool_choice and tool role messages, streamed and whole, and the
    ollama client's tools=: the call is well formed and names an offered function."""
    import json

    config = ServerConfig(defaults=SamplingParams(temperature=0, max_new_tokens=80))
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    with live_server(default_engine, config) as live:
        oa = openai.OpenAI(base_url=f"{live.url}/v1", api_key="x", max_retries=0, timeout=120)
        r = oa.chat.completions.create(model="SmolLM2-135M-Instruct", messages=ask,
                                       tools=[WEATHER, TIME], tool_choice="required")
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        call = choice.message.tool_calls[0]
        assert call.function.name in ("get_weather", "get_time")
        args = json.loads(call.function.arguments)
        assert isinstance(args, dict)
        named = oa.chat.completions.create(
            model="SmolLM2-135M-Instruct", messages=ask, tools=[WEATHER, TIME],
            tool_choice={"type": "function", "function": {"name": "get_weather"}})
        weather = named.choices[0].message.tool_calls[0]
        assert weather.function.name == "get_weather"
        assert set(json.loads(weather.function.arguments)) <= {"city", "unit"}
        # The result goes back as a tool message; the final answer is text.
        follow = oa.chat.completions.create(model="SmolLM2-135M-Instruct", tools=[WEATHER],
                                            tool_choice="none", messages=[
            *ask, {"role": "assistant", "content": None, "tool_calls": [weather.model_dump()]},
            {"role": "tool", "tool_call_id": weather.id, "content": "18 degrees and sunny"}])
        assert follow.choices[0].finish_reason == "stop" and follow.choices[0].message.content
        # Streamed: the official client joins the deltas into one call.
        stream = oa.chat.completions.create(model="SmolLM2-135M-Instruct", messages=ask,
                                            tools=[WEATHER], tool_choice="required", stream=True)
        chunks = list(stream)
        calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])] if chunks else []
        assert calls and calls[0].function.name == "get_weather"
        assert chunks[-1].choices[0].finish_reason == "tool_calls"
        reply = ollama.Client(host=live.url).chat(model="SmolLM2-135M-Instruct", messages=ask,
                                                  tools=[WEATHER])
        if reply.message.tool_calls:  # auto: the model may also answer in words
            assert reply.message.tool_calls[0].function.name == "get_weather"
            assert isinstance(reply.message.tool_calls[0].function.arguments, dict)
        else:
            assert reply.message.content and not reply.message.content.lstrip().startswith("{")
        with pytest.raises(openai.BadRequestError):
            oa.chat.completions.create(model="SmolLM2-135M-Instruct", messages=ask, tools=[WEATHER],
                                       tool_choice={"type": "function", "function": {"name": "nope"}})
