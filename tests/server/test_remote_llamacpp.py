"""A remote profile on a server nobody here wrote: llama-cpp-python's own OpenAI-compatible
server (``python -m llama_cpp.server``) on the default model's GGUF file, on loopback,
behind an API key.

Needs llama-cpp-python and its ``[server]`` extras (fastapi, sse-starlette,
starlette-context: pinned in the dev extras); skipped where they are not installed."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("llama_cpp.server.app")

import httpx

from slmchat.commands.remote import check
from slmchat.engine.generation.decode import CancelToken
from slmchat.engine.generation.prompting import ChatMessage
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model import remote
from slmchat.engine.model.default import gguf_path
from slmchat.engine.model.spec import ModelSpec
from slmchat.engine.session import Engine

KEY = "sk-llamacpp-0a1b2c3d"
ALIAS = "smollm2-gguf"
GREEDY = SamplingParams(temperature=0.0, repetition_penalty=1.1, max_new_tokens=24, seed=1)
QUESTION = [ChatMessage("user", "What is the capital of France?")]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # its log goes to a file: llama.cpp's load log fills a pipe and the server would block
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path()),
             "--model_alias", ALIAS, "--host", "127.0.0.1", "--port", str(port),
             "--n_ctx", "2048", "--n_threads", "2", "--api_key", KEY],
            stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 180
    try:
        while True:
            if proc.poll() is not None:
                err = log.read_text(errors="replace")
                pytest.fail(f"llama_cpp.server exited {proc.returncode}: {err[-2000:]}")
            try:
                if httpx.get(url + "/models", headers={"Authorization": f"Bearer {KEY}"},
                             timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not start in 180 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("LLAMA_KEY", KEY)
    yield
    remote.use_profiles([])


def _profile(url: str) -> remote.RemoteProfile:
    prof = remote.RemoteProfile("llama", url, api_key_env="LLAMA_KEY")
    remote.use_profiles([prof])
    return prof


def test_remote_test_on_llama_cpp_python(llama_server: str) -> None:
    ok, problems = check(_profile(llama_server))
    assert problems == []
    assert ok is not None and ok.startswith(f"llama: ok: {llama_server} (openai, this machine), "
                                            f"1 model, {ALIAS} first token in ")


def test_chat_on_llama_cpp_python_with_the_gguf_s_own_template(llama_server: str) -> None:
    _profile(llama_server)
    far = Engine()
    info = far.load(ModelSpec(path=f"remote://llama/{ALIAS}"))
    assert info.name == f"llama:{ALIAS}" and info.device.startswith("127.0.0.1:")
    chunks = list(far.stream_chat(QUESTION, GREEDY))
    text, last = "".join(c.text for c in chunks), chunks[-1]
    assert last.finish_reason in ("stop", "length") and last.error is None, last
    assert "Paris" in text
    assert last.prompt_tokens > 5 and 0 < last.new_tokens <= 24
    assert last.ttft_s is not None and last.ttft_s > 0
    # The stream, put together, is the server's own greedy answer to the same request
    # without streaming: the messages went as they are (its GGUF template applied them)
    # and no delta was lost. llama-cpp-python sends no usage while streaming, so the
    # count is the deltas' (one token each), the same as its usage says.
    whole = httpx.post(f"{llama_server}/chat/completions", timeout=120,
                       headers={"Authorization": f"Bearer {KEY}"},
                       json={"model": ALIAS, "max_tokens": 24, "temperature": 0.0,
                             "top_p": 0.9, "top_k": 50, "repeat_penalty": 1.1, "seed": 1,
                             "messages": [{"role": "user", "content": QUESTION[0].content}]})
    assert whole.status_code == 200, whole.text
    body = whole.json()
    assert text == body["choices"][0]["message"]["content"]
    assert last.new_tokens == body["usage"]["completion_tokens"]


def test_wrong_key_and_cancel_on_llama_cpp_python(llama_server: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _profile(llama_server)
    far = Engine()
    far.load(ModelSpec(path=f"remote://llama/{ALIAS}"))
    cancel = CancelToken()
    seen = []
    for chunk in far.stream_chat(QUESTION, SamplingParams(max_new_tokens=200), cancel):
        seen.append(chunk)
        if chunk.text:
            cancel.cancel()  # stop after the first text
    assert seen[-1].finish_reason == "cancelled" and seen[-1].new_tokens < 200
    monkeypatch.setenv("LLAMA_KEY", "sk-wrong")
    chunks = list(far.stream_chat(QUESTION, GREEDY))
    assert chunks[-1].finish_reason == "error"
    assert chunks[-1].error is not None and chunks[-1].error.startswith("llama: 127.0.0.1:")
    assert "refused the key (401" in chunks[-1].error and "\n" not in chunks[-1].error
