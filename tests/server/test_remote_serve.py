"""``slmchat serve --with-remote``: one local endpoint lists the local model beside the
models of remote profiles, and a chat on a remote one goes to its server (here another
``slmchat serve`` on loopback)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from slmchat.config import RemoteSettings, Settings
from slmchat.engine.model import remote
from slmchat.engine.model.discovery import ModelEntry, inspect_folder, remote_entries
from slmchat.engine.model.spec import ModelSpec
from slmchat.engine.session import Engine
from slmchat.errors import InvalidParameterError
from slmchat.server.state import ServerConfig
from tests.server.fakes import EchoEngine, echo_words
from tests.server.live import Live, live_server


@pytest.fixture(autouse=True)
def _no_profiles() -> Iterator[None]:
    yield
    remote.use_profiles([])


@contextmanager
def front_of(tiny_llama_dir: Path, base_url: str) -> Iterator[tuple[Live, ModelEntry]]:
    """``serve --with-remote`` in front of ``base_url`` (profile "lab"), the tiny model
    loaded locally; yields the live server and the local model's entry."""
    spec = ModelSpec(path=str(tiny_llama_dir), device="cpu", dtype="fp32")
    local = Engine()
    local.load(spec)
    settings = Settings(remote=[RemoteSettings(name="lab", base_url=base_url)])
    remote.use_profiles([r.profile() for r in settings.remote])
    entry = inspect_folder(tiny_llama_dir, "models")
    assert entry is not None

    def discover() -> list:
        return [entry, *remote_entries(settings)]

    with live_server(local, ServerConfig(base_spec=spec), discover=discover) as front:
        yield front, entry


def _chat(url: str, model: str, text: str) -> dict:
    r = httpx.post(f"{url}/v1/chat/completions", timeout=60, json={
        "model": model, "max_tokens": 4, "temperature": 0,
        "messages": [{"role": "user", "content": text}]})
    assert r.status_code == 200, r.text
    return r.json()


def test_serve_lists_remote_models_beside_local_and_passes_chats_on(tiny_llama_dir: Path) -> None:
    far = EchoEngine(reply_tokens=4)
    far.load(ModelSpec(path="/models/far"))
    with live_server(far) as back, front_of(tiny_llama_dir, back.url + "/v1") as (front, entry):
        local_name = front.state.engine.info.name  # type: ignore[union-attr]
        names = [m["id"] for m in httpx.get(f"{front.url}/v1/models").json()["data"]]
        assert names[0] == local_name and "lab:far" in names
        reply = _chat(front.url, "lab:far", "over there")
        assert reply["choices"][0]["message"]["content"] == \
            "".join(echo_words("over there", 4))
        assert reply["model"] == "lab:far"
        assert far.started == ["over there"]  # the back server wrote it
        tags = httpx.get(f"{front.url}/api/tags").json()["models"]
        assert [t["name"] for t in tags] == ["lab:far", entry.name]
        # and back to the local model through the same endpoint
        again = _chat(front.url, local_name, "here")
        assert again["model"] == local_name
        assert far.started == ["over there"]


def test_with_remote_needs_a_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    from slmchat.commands import serve

    with pytest.raises(InvalidParameterError, match="no \\[\\[remote\\]\\] profile"):
        serve._with_remote()


@pytest.mark.parametrize("model", ["broken", "drop", "busy"])
def test_an_upstream_failure_is_a_502_naming_the_profile(tiny_llama_dir: Path, model: str) -> None:
    """A remote server that fails (500, a stream cut half way, 429) behind
    ``serve --with-remote`` is the gateway's 502 with the profile's one line, in the API's
    error shape, not a 500 as if this server had failed."""
    from tests.remotekit import stub_server

    with stub_server() as stub, front_of(tiny_llama_dir, stub.url) as (front, _entry):
        r = httpx.post(f"{front.url}/v1/chat/completions", timeout=60, json={
            "model": f"lab:{model}", "max_tokens": 4,
            "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 502, r.text
        message = r.json()["error"]["message"]
        assert "lab" in message and "\n" not in message
        o = httpx.post(f"{front.url}/api/chat", timeout=60, json={
            "model": f"lab:{model}", "stream": False,
            "messages": [{"role": "user", "content": "hi"}]})
        assert o.status_code == 502 and "lab" in o.json()["error"], o.text
