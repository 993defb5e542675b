"""Serve benchmark: tokens/s through the HTTP API vs through the CLI, on the same model.

    python benchmarks/bench_serve.py [--model default] [--max-tokens 96] [--runs 5]

Starts `slmchat serve` as its own process on a free loopback port (so the clients here do
not share the server's interpreter), then measures:

- CLI: `slmchat generate --stats` (a process per run; decode tok/s and TTFT from its
  stats line, the model load excluded);
- API, 1 client: streamed chat completions one after another;
- API, 8 clients: 8 streams at once (the server runs one at a time, the rest queue).

For each: completion tokens/s (per request, and aggregate over the wall time for the
concurrent case), time to first byte of the response (headers) and to the first content
token, p50 and max. Greedy decoding, same prompt everywhere. Writes
benchmarks/results/serve.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Write a long story about a fox who learns to sail across the sea."


def _cpu() -> str:
    from slmchat.engine.devices import cpu_info

    return str(cpu_info()["model"])


def cli_run(model: str, max_tokens: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "slmchat", "generate", PROMPT, "--model", model,
         "--temperature", "0", "--max-new-tokens", str(max_tokens), "--stats"],
        cwd=ROOT, capture_output=True, text=True, check=True)
    stats = out.stderr.strip().splitlines()[-1]
    fields = dict(kv.split("=") for kv in stats.split()[1:])
    return {"tokens": int(fields["new_tokens"]), "decode_tps": float(fields["decode_tok_s"]),
            "ttft_s": float(fields["ttft_s"])}


def api_run(base: str, max_tokens: int) -> dict[str, float]:
    body = {"model": "", "messages": [{"role": "user", "content": PROMPT}], "temperature": 0,
            "max_tokens": max_tokens, "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    first_byte = first_token = None
    tokens = 0
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=600) as r:
        r.raise_for_status()
        first_byte = time.perf_counter() - start
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
            for choice in event.get("choices", []):
                if choice["delta"].get("content") and first_token is None:
                    first_token = time.perf_counter() - start
    total = time.perf_counter() - start
    first_token = first_token or total
    decode = total - first_token
    return {"tokens": tokens, "total_s": total, "ttfb_s": first_byte, "ttft_s": first_token,
            "e2e_tps": tokens / total if total else 0.0,
            "decode_tps": (tokens - 1) / decode if tokens > 1 and decode > 0 else 0.0}


def start_server(model: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "slmchat", "serve", "--model", model, "--port", "0",
         "--max-queue", "16", "--log-level", "warning"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "http://" not in line:
        proc.kill()
        raise SystemExit(f"server did not start: {proc.stderr.read() if proc.stderr else ''}")
    return proc, "http://" + line.split("http://", 1)[1].split()[0]


def summarize(runs: list[dict[str, float]], key: str) -> dict[str, float]:
    values = [r[key] for r in runs]
    return {"p50": statistics.median(values), "max": max(values)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--max-tokens", type=int, default=96)
    p.add_argument("--runs", type=int, default=5, help="sequential runs for CLI and 1 client")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve.json"))
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    cli_run(args.model, 4)  # converts/caches the default model once, not timed
    proc, base = start_server(args.model)
    cli: list[dict[str, float]] = []
    one: list[dict[str, float]] = []
    try:
        api_run(base, 4)  # warm-up
        # CLI and API runs alternate, so that load from other processes on a shared
        # machine falls on both alike (the idle server only waits on its socket).
        for _ in range(args.runs):
            cli.append(cli_run(args.model, args.max_tokens))
            one.append(api_run(base, args.max_tokens))
        start = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            many = list(pool.map(lambda _: api_run(base, args.max_tokens), range(args.clients)))
        wall = time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(30)

    rows = [
        ("CLI `slmchat generate`", summarize(cli, "decode_tps")["p50"], None,
         summarize(cli, "ttft_s"), None),
        ("API, 1 client (stream)", summarize(one, "decode_tps")["p50"],
         summarize(one, "e2e_tps")["p50"], summarize(one, "ttft_s"), summarize(one, "ttfb_s")),
        (f"API, {args.clients} clients at once", summarize(many, "decode_tps")["p50"],
         sum(r["tokens"] for r in many) / wall, summarize(many, "ttft_s"),
         summarize(many, "ttfb_s")),
    ]
    print(f"\nmodel {args.model}, greedy, max_tokens {args.max_tokens}, CPU {_cpu()}, "
          f"{os.cpu_count()} cores\n")
    print("| path | decode tok/s (p50) | end-to-end tok/s | first token s (p50 / max) "
          "| first byte s (p50 / max) |")
    print("| --- | --- | --- | --- | --- |")
    for name, decode, e2e, ttft, ttfb in rows:
        e2e_s = f"{e2e:.1f}" if e2e is not None else "–"
        ttfb_s = f"{ttfb['p50']:.3f} / {ttfb['max']:.3f}" if ttfb else "–"
        print(f"| {name} | {decode:.1f} | {e2e_s} | {ttft['p50']:.3f} / {ttft['max']:.3f} "
              f"| {ttfb_s} |")
    result: dict[str, Any] = {
        "model": args.model, "max_tokens": args.max_tokens, "cpu": _cpu(),
        "cores": os.cpu_count(), "cli": cli, "api_1_client": one,
        f"api_{args.clients}_clients": many, f"api_{args.clients}_clients_wall_s": wall,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
