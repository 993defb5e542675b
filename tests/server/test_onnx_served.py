"""The server on the onnx runtime (the default on a CPU): what it reports about the model,
and whether other clients are answered while a 6,000-token prompt is read."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import ollama
import pytest

from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model.spec import ModelSpec
from slmchat.engine.session import Engine
from slmchat.server.state import ServerConfig
from tests.server.live import live_server
from tests.tinymodels import make_tiny_llama


def _onnx_engine(folder: Path) -> Engine:
    engine = Engine()
    info = engine.load(ModelSpec(path=str(folder)))  # runtime auto: onnx on a CPU
    assert info.runtime == "onnx", info.warnings
    return engine


def test_parameter_count_and_context_length_on_the_onnx_runtime(tiny_llama_dir: Path,
                                                                   tiny_engine) -> None:
    expected = tiny_engine.info.n_params  # torch's count of the same checkpoint
    assert expected > 0
    with live_server(_onnx_engine(tiny_llama_dir)) as live:
        name = live.state.catalog.current
        ol = ollama.Client(host=live.url, timeout=60)
        listed = ol.list().models[0].details
        assert listed is not None and listed.parameter_size not in (None, "", "0")
        shown = ol.show(name)
        assert shown.modelinfo is not None
        assert shown.modelinfo["general.parameter_count"] == expected
        assert shown.modelinfo["llama.context_length"] == 256
        running = ol.ps().models[0].details
        assert running is not None and running.parameter_size == listed.parameter_size
        models = httpx.get(f"{live.url}/v1/models").json()["data"]
        assert models[0]["max_model_len"] == models[0]["context_length"] == 256
        one = httpx.get(f"{live.url}/v1/models/{name}").json()
        assert one["id"] == name and one["max_model_len"] == 256


# Polls GET /api/version from another process (its own interpreter: the measurement is
# the server's, not this process's), one line per poll: start (monotonic) and seconds.
POLL = """
import socket, sys, time
port = int(sys.argv[1])
print("ready", flush=True)
while True:
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(b"GET /api/version HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n\\r\\n")
        while s.recv(65536):
            pass
    print(t0, time.monotonic() - t0, flush=True)
    time.sleep(0.02)
"""


@pytest.fixture(scope="module")
def long_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return _onnx_engine(make_tiny_llama(tmp_path_factory.mktemp("tiny-llama-8k"), context=8192))


def test_version_answers_while_a_6k_token_prompt_is_read(long_engine: Engine) -> None:
    """The event loop does no prompt work (plan and prefill run in the generation thread),
    so other requests are answered during a prefill. The GIL no longer delays them either:
    the onnx backend calls ONNX Runtime GenAI through its C API (engine/model/onnx_capi.py),
    which releases it for each forward, where the Python module held it through each
    ``append_tokens`` chunk (0.5-2 s on the 135M model; tests/engine/model/
    test_onnx_default.py counts a ticker during such a prefill, and
    benchmarks/bench_prefill_gil.py measures both paths)."""
    text = "The quick brown fox jumps over the lazy dog. " * 176  # ~6,000 tokens here
    config = ServerConfig(defaults=SamplingParams(temperature=0, max_new_tokens=1))
    with live_server(long_engine, config) as live:
        poller = subprocess.Popen([sys.executable, "-c", POLL, str(live.port)],
                                  stdout=subprocess.PIPE, text=True)
        lines: list[str] = []
        try:
            assert poller.stdout is not None and poller.stdout.readline().strip() == "ready"
            reader = threading.Thread(target=lambda: lines.extend(poller.stdout or ()),
                                      daemon=True)
            reader.start()
            time.sleep(0.2)
            t0 = time.monotonic()
            r = httpx.post(f"{live.url}/api/chat", timeout=300, content=json.dumps({
                "messages": [{"role": "user", "content": text}], "stream": False,
                "options": {"num_predict": 1}}))
            t1 = time.monotonic()
        finally:
            poller.terminate()
            poller.wait(10)
        assert r.status_code == 200, r.text
        assert r.json()["prompt_eval_count"] >= 5000
        polls = [(float(a), float(b)) for a, b in (ln.split() for ln in lines if ln.strip())]
        during = [s for start, s in polls if t0 <= start and start + s <= t1]
        print(f"prompt of {r.json()['prompt_eval_count']} tokens read in {t1 - t0:.2f} s; "
              f"GET /api/version meanwhile: {len(during)} polls, median "
              f"{statistics.median(during):.3f} s, max {max(during):.3f} s")
        assert len(during) >= 3
        assert max(during) < 1.0
