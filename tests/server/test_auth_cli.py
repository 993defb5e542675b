"""Safe by default: loopback unless a key is set, Bearer auth, the CLI's one-line errors,
a real `slmchat serve` process stopped by SIGTERM mid-stream, and --log-conversations."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from slmchat.cli import main
from slmchat.engine.store.store import Store
from slmchat.server.convlog import ConversationLog
from slmchat.server.state import ServerConfig
from tests.server.fakes import EchoEngine
from tests.server.live import live_server

ROOT = Path(__file__).resolve().parents[2]
HELLO = [{"role": "user", "content": "hello there"}]


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("slmchat: error:") and "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.lan"])
def test_non_loopback_without_a_key_refuses_to_start(capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      host: str) -> None:
    monkeypatch.delenv("SLMCHAT_API_KEY", raising=False)
    line = _one_line_error(capsys, ["serve", "--host", host, "--model", "/nonexistent"])
    assert "--api-key" in line


def test_busy_port_and_bad_flags_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _one_line_error(capsys, ["serve", "--port", str(port), "--model", "/nonexistent"])
        assert f"cannot listen on 127.0.0.1:{port}" in line
    assert "--max-queue" in _one_line_error(capsys, ["serve", "--max-queue", "-1"])
    assert "--port" in _one_line_error(capsys, ["serve", "--port", "70000"])


def test_bearer_key_required_when_set() -> None:
    with live_server(EchoEngine(), ServerConfig(api_key="s3cret-key")) as live:
        url = f"{live.url}/v1/chat/completions"
        missing = httpx.post(url, json={"messages": HELLO})
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "invalid_api_key"
        wrong = httpx.post(url, json={"messages": HELLO}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "wrong" in wrong.json()["error"]["message"]
        ollama_path = httpx.get(f"{live.url}/api/tags")
        assert ollama_path.status_code == 401 and isinstance(ollama_path.json()["error"], str)
        right = httpx.post(url, json={"messages": HELLO},
                           headers={"Authorization": "Bearer s3cret-key"})
        assert right.status_code == 200
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{live.url}/v1", api_key="bad", max_retries=0).models.list()
        good = openai.OpenAI(base_url=f"{live.url}/v1", api_key="s3cret-key", max_retries=0)
        assert [m.id for m in good.models.list()] == ["echo"]


def test_cors_only_when_asked() -> None:
    headers = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"}
    with live_server(EchoEngine()) as live:
        r = httpx.options(f"{live.url}/v1/chat/completions", headers=headers)
        assert "access-control-allow-origin" not in r.headers
    config = ServerConfig(cors_origins=("http://localhost:3000",))
    with live_server(EchoEngine(), config) as live:
        r = httpx.options(f"{live.url}/v1/chat/completions", headers=headers)
        assert r.headers["access-control-allow-origin"] == "http://localhost:3000"


def test_foreign_host_and_origin_are_refused_the_official_clients_are_not() -> None:
    """A DNS-rebinding page sends Host and Origin of its own domain; a drive-by page its
    Origin (a text/plain POST needs no preflight). Both get 403 before any generation;
    loopback names, --cors-origin pages and clients without an Origin pass."""
    engine = EchoEngine(reply_tokens=3)
    body = json.dumps({"model": "echo", "messages": HELLO, "stream": False}).encode()
    with live_server(engine, ServerConfig(cors_origins=("https://chat.example",))) as live:
        def ask(**headers: str) -> httpx.Response:
            return httpx.post(f"{live.url}/api/chat", content=body,
                              headers={"Content-Type": "text/plain", **headers})

        rebound = ask(Host=f"attacker.example:{live.port}",
                      Origin=f"http://attacker.example:{live.port}")
        assert rebound.status_code == 403 and "attacker.example" in rebound.json()["error"]
        page = ask(Origin="http://attacker.example")
        assert page.status_code == 403 and "--cors-origin" in page.json()["error"]
        v1 = httpx.post(f"{live.url}/v1/chat/completions", json={"messages": HELLO},
                        headers={"Host": "attacker.example"})
        assert v1.status_code == 403 and v1.json()["error"]["type"] == "permission_error"
        assert engine.started == []  # nothing reached the model
        assert ask(Origin="https://chat.example").status_code == 200  # --cors-origin
        assert ask(Origin="http://localhost:5173").status_code == 200  # a local page
        assert ask(Host=f"localhost:{live.port}").status_code == 200
        assert ask(Host=f"[::1]:{live.port}").status_code == 200
        oa = openai.OpenAI(base_url=f"{live.url}/v1", api_key="x", max_retries=0)
        assert oa.chat.completions.create(model="echo", messages=HELLO).choices  # type: ignore[arg-type]
        assert ollama.Client(host=live.url).chat(model="echo", messages=HELLO).done
    with live_server(EchoEngine(), ServerConfig(host="192.0.2.7")) as live:  # --host 192.0.2.7
        url = f"{live.url}/api/version"
        assert httpx.get(url, headers={"Host": "192.0.2.7:8000"}).status_code == 200
        assert httpx.get(url, headers={"Host": "192.0.2.8:8000"}).status_code == 403
    with live_server(EchoEngine(), ServerConfig(host="0.0.0.0", api_key="k")) as live:
        # every name reaches a wildcard address; the API key guards it
        r = httpx.get(f"{live.url}/api/version",
                      headers={"Host": "laptop.lan:8000", "Authorization": "Bearer k"})
        assert r.status_code == 200


def test_log_conversations_stores_each_request(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    with live_server(EchoEngine(reply_tokens=3), log_store=ConversationLog(store)) as live:
        r = httpx.post(f"{live.url}/v1/chat/completions", json={
            "messages": [{"role": "system", "content": "Be kind."}, *HELLO], "seed": 5})
        assert r.status_code == 200
        reply = r.json()["choices"][0]["message"]["content"]
    convs = store.list_conversations()
    assert len(convs) == 1 and convs[0].settings == {"system_prompt": "Be kind."}
    user, assistant = store.messages(convs[0].id)
    assert (user.role, user.content) == ("user", "hello there")
    assert assistant.content == reply and assistant.status == "done"
    assert assistant.provenance is not None
    assert assistant.provenance["source"]["api"] == "openai"
    assert assistant.provenance["seed"] == 5
    assert assistant.provenance["model"]["name"] == "echo"


def test_nothing_is_logged_by_default(tmp_path: Path) -> None:
    with live_server(EchoEngine()) as live:
        assert httpx.post(f"{live.url}/v1/chat/completions", json={"messages": HELLO}).is_success
    assert not any(tmp_path.rglob("*.db"))


def test_real_process_serves_and_stops_cleanly_on_sigterm(tiny_llama_dir: Path,
                                                          isolated_dirs: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "slmchat", "serve", "--model", str(tiny_llama_dir), "--port", "0",
         "--api-key", "k", "--log-conversations", "--temperature", "0", "--log-level", "warning"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "SLMCHAT_THREADS": "1"})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the server listens (or exits)
        assert "http://127.0.0.1:" in line, proc.stderr.read() if proc.stderr else line
        base = line.split("http://", 1)[1].split()[0].split("/")[0]
        auth = {"Authorization": "Bearer k"}
        events = []
        with httpx.stream("POST", f"http://{base}/v1/chat/completions", headers=auth, timeout=60,
                          json={"messages": HELLO, "max_tokens": 200, "stream": True}) as r:
            assert r.status_code == 200
            for event in r.iter_lines():
                if event:
                    events.append(event)
                if len(events) == 3:
                    proc.send_signal(signal.SIGTERM)
        assert events[-1] == "data: [DONE]"
        assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] in ("stop", "length")
        assert proc.wait(timeout=60) == 0
        err = proc.stderr.read() if proc.stderr else ""
        assert "Traceback" not in err and "stopped" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    store = Store(isolated_dirs / "data" / "conversations.db")
    convs = store.list_conversations()
    assert len(convs) == 1
    assert store.messages(convs[0].id)[-1].provenance["source"]["endpoint"] == "/v1/chat/completions"


def test_log_conversations_on_a_full_disk_answers_and_leaves_no_empty_rows(
        small_disk, caplog: pytest.LogCaptureFixture) -> None:
    store = Store(small_disk.root / "c.db")
    with live_server(EchoEngine(reply_tokens=3), log_store=ConversationLog(store)) as live:
        url = f"{live.url}/v1/chat/completions"
        assert httpx.post(url, json={"messages": HELLO}).status_code == 200
        small_disk.fill(24 * 1024)
        big = [{"role": "user", "content": "fill " * 40_000}]
        for _ in range(5):
            assert httpx.post(url, json={"messages": big}, timeout=60).status_code == 200
        warnings = [r.getMessage() for r in caplog.records
                    if "could not log the conversation" in r.getMessage()]
        assert len(warnings) == 5 and all("disk full" in w for w in warnings), warnings
        assert not any("cannot rollback" in w for w in warnings)
        assert len(store.list_conversations()) == 1  # no empty row per failed request
        small_disk.unfill()
        assert httpx.post(url, json={"messages": HELLO}).status_code == 200
    convs = store.list_conversations()
    assert len(convs) == 2 and all(len(store.messages(c.id)) == 2 for c in convs)
    store.close()
