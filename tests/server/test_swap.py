"""One model-swap path (``Catalog.switch``): a generation that names another model and
Ollama's load-only request swap the same way, in turn with generations, and a model
that fails to load is a 400 naming ``model`` from either, the loaded model kept."""

from __future__ import annotations

import time

import httpx

from slmchat.engine.model.discovery import ModelEntry
from tests.server.fakes import EchoEngine
from tests.server.live import live_server

MODELS = [ModelEntry(name="other", path="/models/other", source="models", format="safetensors"),
          ModelEntry(name="broken", path="/models/broken", source="models",
                     format="safetensors")]


def test_a_generation_and_a_load_only_request_swap_alike() -> None:
    engine = EchoEngine(reply_tokens=2, refuse=("/models/broken",))
    with live_server(engine, discover=lambda: MODELS) as live, httpx.Client(
            base_url=live.url, timeout=30) as http:
        ask = {"model": "other", "messages": [{"role": "user", "content": "hi"}]}
        reply = http.post("/v1/chat/completions", json=ask)
        assert reply.status_code == 200 and reply.json()["model"] == "other"
        assert engine.info is not None and engine.info.path == "/models/other"
        loaded = http.post("/api/generate", json={"model": "echo-home"})
        assert loaded.status_code == 404  # not a model anyone can load
        for path, body in (("/v1/chat/completions", {**ask, "model": "broken"}),
                           ("/api/chat", {"model": "broken", "stream": False}),
                           ("/api/chat", {**ask, "model": "broken", "stream": False})):
            failed = http.post(path, json=body)
            assert failed.status_code == 400, (path, failed.text)
            assert "the weights are damaged" in failed.text
            if path.startswith("/v1"):
                assert failed.json()["error"]["param"] == "model"
            assert engine.info.path == "/models/other"  # the model loaded before stays
        deadline = time.monotonic() + 10  # the worker frees the gate just after its 400
        while (live.state.gate.busy or live.state.workers) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not live.state.gate.busy and not live.state.workers
