"""Does a long prefill on the onnx runtime stop the other Python threads? (issue 26, item 4)

    python benchmarks/bench_prefill_gil.py [--tokens 6000] [--rounds 2]

Part 1, in this process, on the default model's ONNX copy: one thread feeds a prompt of
``--tokens`` tokens in the backend's 512-token chunks, through (a) onnxruntime-genai's
Python module and (b) its C API via ctypes (slmchat.engine.model.onnx_capi, what the onnx
backend now uses); meanwhile the main thread sleeps 5 ms at a time and records how late
each wake-up is. A late wake-up is what the server's event loop and the app's UI thread
feel. Also decode tok/s of both (128 greedy steps), interleaved rounds, best of each.

Part 2, end to end: `slmchat serve` in its own process on a loopback port; one client
sends a ``--tokens``-token prompt, another polls GET /api/version every 20 ms during the
prefill and reports the latencies; then a client that leaves during a long prompt and the
time until the next request's first token.

Prints Markdown tables and writes benchmarks/results/prefill_gil.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 512


def _cpu() -> str:
    from slmchat.engine.devices import cpu_info

    return str(cpu_info().get("model") or "unknown CPU")


def _wake_gaps(work: Any) -> tuple[float, list[float]]:
    """Run ``work`` in a thread; return its seconds and the main thread's wake-up delays."""
    gaps: list[float] = []
    done = threading.Event()
    took: list[float] = []

    def run() -> None:
        start = time.perf_counter()
        work()
        took.append(time.perf_counter() - start)
        done.set()

    worker = threading.Thread(target=run)
    worker.start()
    while not done.is_set():
        start = time.perf_counter()
        time.sleep(0.005)
        gaps.append(time.perf_counter() - start - 0.005)
    worker.join()
    return took[0], gaps


def in_process(tokens: int, rounds: int) -> list[dict[str, Any]]:
    import numpy as np
    import onnxruntime_genai as og

    from slmchat.engine.model import onnx_capi
    from slmchat.engine.model.default import ensure_default_model
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.session import Engine

    engine = Engine()
    engine.load(ModelSpec(path=str(ensure_default_model()), runtime="onnx", device="cpu"))
    folder = engine.loaded.model.folder  # type: ignore[union-attr]
    overlay = json.dumps({"model": {"decoder": {"session_options": {
        "intra_op_num_threads": 2, "inter_op_num_threads": 1}}}})
    vocab = engine.loaded.model.config.vocab_size  # type: ignore[union-attr]
    ids = [int(i) for i in np.random.default_rng(0).integers(100, vocab - 100, tokens)]

    cfg = og.Config(str(folder))
    cfg.overlay(overlay)
    py_model = og.Model(cfg)
    c_model = onnx_capi.Model(folder, overlay)

    def py_gen() -> Any:
        params = og.GeneratorParams(py_model)
        params.set_search_options(max_length=tokens + 256, do_sample=False)
        return og.Generator(py_model, params)

    def c_gen() -> Any:
        return onnx_capi.Generator(c_model, tokens + 256)

    rows: dict[str, dict[str, Any]] = {}
    for _ in range(rounds):
        for name, make in (("python module (before)", py_gen), ("C API via ctypes (now)", c_gen)):
            gen = make()

            def prefill(gen: Any = gen) -> None:
                for i in range(0, len(ids), CHUNK):
                    gen.append_tokens(ids[i:i + CHUNK])

            seconds, gaps = _wake_gaps(prefill)
            start = time.perf_counter()
            for _step in range(128):
                logits = np.asarray(gen.get_logits(), dtype=np.float32).reshape(-1)
                gen.append_tokens([int(logits.argmax())])
            tps = 128 / (time.perf_counter() - start)
            row = rows.setdefault(name, {"variant": name, "prefill_s": [], "decode_tps": [],
                                         "gap_p50_ms": [], "gap_max_ms": []})
            row["prefill_s"].append(seconds)
            row["decode_tps"].append(tps)
            row["gap_p50_ms"].append(1000 * statistics.median(gaps))
            row["gap_max_ms"].append(1000 * max(gaps))
            del gen
    out = []
    for row in rows.values():
        out.append({"variant": row["variant"], "prefill_s": min(row["prefill_s"]),
                    "decode_tps": max(row["decode_tps"]),
                    "gap_p50_ms": min(row["gap_p50_ms"]), "gap_max_ms": min(row["gap_max_ms"])})
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def end_to_end(tokens: int) -> dict[str, Any]:
    import httpx

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "slmchat", "serve", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                if httpx.get(f"{base}/api/version", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        # "word " is one token of the default model's tokenizer: a prompt of ~tokens tokens
        prompt = "Summarise: " + "word " * tokens
        body = {"model": "default", "messages": [{"role": "user", "content": prompt}],
                "max_tokens": 4, "temperature": 0}
        httpx.post(f"{base}/v1/chat/completions", json={**body, "max_tokens": 1,
                   "messages": [{"role": "user", "content": "hi"}]}, timeout=300)  # warm up
        lat: list[float] = []
        finished = threading.Event()

        def long_request() -> None:
            httpx.post(f"{base}/v1/chat/completions", json=body, timeout=600)
            finished.set()

        worker = threading.Thread(target=long_request)
        start = time.perf_counter()
        worker.start()
        time.sleep(0.3)
        with httpx.Client(timeout=30) as client:
            while not finished.is_set():
                t0 = time.perf_counter()
                client.get(f"{base}/api/version")
                lat.append(time.perf_counter() - t0)
                time.sleep(0.02)
        worker.join()
        long_s = time.perf_counter() - start

        # A client that leaves 1.5 s into a long prompt: how soon does the next one start?
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(f"{base}/v1/chat/completions", json=body, timeout=1.5)
        t0 = time.perf_counter()
        with httpx.stream("POST", f"{base}/v1/chat/completions", timeout=600, json={
                "model": "default", "stream": True, "max_tokens": 4, "temperature": 0,
                "messages": [{"role": "user", "content": "Say hello."}]}) as resp:
            for line in resp.iter_lines():
                if line.startswith("data: ") and '"content"' in line:
                    break
        next_first_token = time.perf_counter() - t0
        return {"prompt_tokens": tokens, "long_request_s": long_s, "polls": len(lat),
                "version_p50_ms": 1000 * statistics.median(lat), "version_max_ms": 1000 * max(lat),
                "after_leaving_first_token_s": next_first_token}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=6000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--skip-serve", action="store_true")
    args = ap.parse_args()
    rows = in_process(args.tokens, args.rounds)
    print(f"\nCPU: {_cpu()}, {os.cpu_count()} cores; {args.tokens}-token prefill in {CHUNK}-token "
          f"chunks, best of {args.rounds} interleaved rounds\n")
    print("| onnx generator | prefill s | decode tok/s | other thread's wake-up delay p50 ms | max ms |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['prefill_s']:.2f} | {r['decode_tps']:.1f} | "
              f"{r['gap_p50_ms']:.1f} | {r['gap_max_ms']:.1f} |")
    result: dict[str, Any] = {"cpu": _cpu(), "in_process": rows}
    if not args.skip_serve:
        e2e = end_to_end(args.tokens)
        result["serve"] = e2e
        print(f"\n`slmchat serve`: GET /api/version during a {args.tokens}-token prompt: "
              f"p50 {e2e['version_p50_ms']:.1f} ms, max {e2e['version_max_ms']:.1f} ms over "
              f"{e2e['polls']} polls; after a client left 1.5 s into that prompt, the next "
              f"request's first token came in {e2e['after_leaving_first_token_s']:.2f} s")
    out = ROOT / "benchmarks" / "results" / "prefill_gil.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
