"""What a remote profile costs on top of the model: the same model answered in-process and
through a profile pointing at ``slmchat serve`` on loopback (OpenAI and Ollama APIs).
`python benchmarks/bench_remote.py [--model default] [--tokens 64] [--rounds 3]`.

The server is a subprocess on a free loopback port serving ``--model``; the local engine
loads the same model in this process. Each round runs every variant once, in turn
(interleaved, so load changes on a shared machine hit all of them alike); the best round
of each is reported: TTFT (request to first text) and decode tok/s (the server's token
count over the time after the first text). Greedy, EOS ignored on the local side, the
same prompt, the prompt's KV cache warm on every side. Prints a table and writes
benchmarks/results/remote.json. Compare ratios within one run; the CPU differs between
machines.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROMPT = "Write a short story about a lighthouse keeper who collects maps."


def _cpu() -> str:
    from slmchat.engine.devices import cpu_info

    return str(cpu_info()["model"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[bytes], timeout: float = 600) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"slmchat serve exited with {proc.returncode}")
        try:
            if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("slmchat serve did not start")


def _run(engine: Any, tokens: int) -> dict[str, float]:
    from slmchat.engine.generation.prompting import ChatMessage
    from slmchat.engine.generation.sampling import SamplingParams

    params = SamplingParams(temperature=0.0, repetition_penalty=1.0, max_new_tokens=tokens,
                            seed=0, ignore_eos=True)
    start = time.perf_counter()
    # The prompt's KV cache is kept on every side (slmchat serve keeps it by default), so
    # TTFT is the same warm case for all; a warm-up round fills it.
    chunks = list(engine.stream_chat([ChatMessage("user", PROMPT)], params))
    last = chunks[-1] if chunks else None
    assert last is not None and last.finish_reason in ("stop", "length"), last
    return {"ttft_s": last.ttft_s or 0.0, "decode_tps": last.decode_tps,
            "new_tokens": last.new_tokens, "wall_s": time.perf_counter() - start}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    from slmchat.engine.model import remote
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.session import Engine

    local = Engine()
    info = local.load(ModelSpec(path=args.model))  # first: a one-time conversion happens here
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "slmchat", "serve", "--model", args.model,
                               "--port", str(port), "--log-level", "warning"],
                              env=dict(os.environ), stdout=subprocess.DEVNULL)
    try:
        _wait(url, server)
        remote.use_profiles([remote.RemoteProfile("bench-openai", url, kind="openai"),
                             remote.RemoteProfile("bench-ollama", url, kind="ollama")])
        served = remote.list_models(remote.profile("bench-openai"))[0].id
        variants: dict[str, Any] = {"local (in-process)": local}
        for name in ("bench-openai", "bench-ollama"):
            engine = Engine()
            engine.load(ModelSpec(path=remote.remote_path(name, served)))
            variants[f"remote, {name.split('-')[1]} API (loopback)"] = engine
        for engine in variants.values():
            _run(engine, 4)  # warm-up: caches, connections, first-call imports
        rounds: dict[str, list[dict[str, float]]] = {k: [] for k in variants}
        for _ in range(args.rounds):
            for label, engine in variants.items():
                rounds[label].append(_run(engine, args.tokens))
    finally:
        server.terminate()
        server.wait(30)
    best = {label: {"ttft_s": min(r["ttft_s"] for r in runs),
                    "decode_tps": max(r["decode_tps"] for r in runs),
                    "new_tokens": runs[-1]["new_tokens"]} for label, runs in rounds.items()}
    base = best["local (in-process)"]
    print(f"model: {info.label}; {args.tokens} tokens, best of {args.rounds} interleaved rounds; "
          f"CPU: {_cpu()}")
    print(f"{'variant':36} {'TTFT s':>8} {'decode tok/s':>13} {'vs local':>9}")
    for label, row in best.items():
        ratio = row["decode_tps"] / base["decode_tps"] if base["decode_tps"] else 0.0
        print(f"{label:36} {row['ttft_s']:8.3f} {row['decode_tps']:13.1f} {ratio:8.2f}x")
    out = Path(__file__).parent / "results" / "remote.json"
    out.write_text(json.dumps({"model": info.label, "tokens": args.tokens,
                               "rounds": args.rounds, "cpu": _cpu(), "best": best,
                               "all": rounds}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
