"""Does the chat app decode as fast as the CLI? `python benchmarks/bench_app.py [--rounds 3]`.

The same prompt, greedy, on the default model in its default runtime, through
`slmchat generate --stats` (a process of its own) and through the real Textual app
(headless, in this process: the reply streams into the Markdown log while the UI thread
renders it, as on screen), in interleaved rounds so a busy machine weighs on both.
Decode tok/s of the app is the one its reply's provenance records. Prints a table and
writes benchmarks/results/app.json; compare the ratio, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Write a short story about a lighthouse keeper who collects maps."


def cli_round(tokens: int) -> dict[str, float]:
    cmd = [sys.executable, "-m", "slmchat", "generate", "--stats", "-t", "0",
           "--max-new-tokens", str(tokens), PROMPT]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    line = [x for x in done.stderr.splitlines() if x.startswith("stats ")][-1]
    stats = dict(kv.split("=", 1) for kv in line.split()[1:])
    return {"decode_tps": float(stats["decode_tok_s"]), "ttft_s": float(stats["ttft_s"]),
            "new_tokens": float(stats["new_tokens"])}


async def app_round(tokens: int) -> dict[str, float]:
    from slmchat.config import Settings
    from slmchat.engine.session import Engine
    from slmchat.engine.store.store import Store
    from slmchat.tui.app import SlmChatApp

    tmp = Path(tempfile.mkdtemp(prefix="slmchat-bench-app-"))
    settings = Settings()
    settings.generation.temperature = 0.0
    settings.generation.max_new_tokens = tokens
    store = Store(tmp / "conversations.db")
    app = SlmChatApp(settings, Engine(), store, persist_settings=False)
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            while not app.chat.model_ready:
                await pilot.pause(0.1)
            app.chat.prompt.insert(PROMPT)
            await pilot.press("enter")
            await pilot.pause(0.2)
            while app.chat.generating or app.chat.pending:
                await pilot.pause(0.1)
            await pilot.pause(0.3)
            conv = app.chat.conv
            assert conv is not None
            reply = [m for m in store.messages(conv.id) if m.role == "assistant"][-1]
            prov = reply.prov
            assert prov is not None and prov.decode_tps is not None and prov.ttft_s is not None
            loaded = app.engine.loaded  # type: ignore[attr-defined]
            return {"decode_tps": prov.decode_tps, "ttft_s": prov.ttft_s,
                    "new_tokens": float(prov.new_tokens or 0),
                    "threads": float(getattr(loaded.model, "threads", 0) or 0)}
    finally:
        store.close()


def run(rounds: int, tokens: int) -> dict[str, Any]:
    from slmchat.engine.devices import cpu_info

    os.environ.setdefault("SLMCHAT_DATA_DIR", tempfile.mkdtemp(prefix="slmchat-bench-data-"))
    os.environ.setdefault("SLMCHAT_CONFIG_DIR", tempfile.mkdtemp(prefix="slmchat-bench-cfg-"))
    cli_round(8)  # warm: the ONNX copy exists, files are in the page cache
    results: dict[str, list[dict[str, float]]] = {"cli": [], "app": []}
    for _ in range(rounds):
        results["cli"].append(cli_round(tokens))
        results["app"].append(asyncio.run(app_round(tokens)))
    summary: dict[str, dict[str, Any]] = {}
    for name, rows in results.items():
        tps = [r["decode_tps"] for r in rows]
        summary[name] = {"decode_tps_median": round(statistics.median(tps), 1),
                         "decode_tps": [round(x, 1) for x in tps],
                         "ttft_s_median": round(statistics.median(r["ttft_s"] for r in rows), 3),
                         "new_tokens": [int(r["new_tokens"]) for r in rows]}
    summary["app"]["onnx_threads"] = [int(r["threads"]) for r in results["app"]]
    ratio = summary["app"]["decode_tps_median"] / summary["cli"]["decode_tps_median"]
    return {"machine": {"cpu": str(cpu_info()["model"]), "cores": os.cpu_count(),
                        "load_avg": [round(x, 2) for x in os.getloadavg()]},
            "model": "SmolLM2-135M-Instruct (default runtime)", "tokens": tokens,
            "rounds": rounds, "threads": os.environ.get("SLMCHAT_THREADS", "auto"),
            "summary": summary, "app_vs_cli": round(ratio, 3),
            "taken_at": time.strftime("%Y-%m-%d %H:%M:%S")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--threads", type=int, default=0,
                    help="pin both paths to N runtime threads (SLMCHAT_THREADS); 0: each "
                    "sizes its threads to the free cores, as users get")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "app.json"))
    args = ap.parse_args()
    if args.threads:
        os.environ["SLMCHAT_THREADS"] = str(args.threads)
    report = run(args.rounds, args.tokens)
    s = report["summary"]
    print(f"{report['machine']['cpu']}, {args.tokens} tokens, greedy, {args.rounds} rounds "
          f"(load average before: {report['machine']['load_avg']})")
    print(f"{'path':<6} {'decode tok/s (median)':>22} {'each round':>28} {'TTFT s':>8}")
    for name in ("cli", "app"):
        print(f"{name:<6} {s[name]['decode_tps_median']:>22.1f} "
              f"{', '.join(f'{x:.1f}' for x in s[name]['decode_tps']):>28} "
              f"{s[name]['ttft_s_median']:>8.3f}")
    print(f"app / cli: {report['app_vs_cli']:.2f}x")
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
