"""Two replies side by side on one machine: interleaved or one after the other?
`python benchmarks/bench_compare.py [--tokens 128] [--reps 2]`.

On the default model (greedy, EOS ignored, same prompt), through slmchat's Engine and
its companion (``Engine.companion``), the pairs the side-by-side view offers:
* fp32 vs its cpu-int8 copy (two models in memory),
* the same model twice with another temperature (shared weights, two KV caches),
each run three ways: interleaved (one token per side in turn, one thread, all torch
threads per token), sequential (left reply, then right) and parallel (a thread per side,
one torch thread each). Reports each side alone (its tok/s), and per pair: the wall time
until both replies are complete, the pair's total tok/s, and when each side's first token
arrived counted from the start. Prints a table and writes benchmarks/results/compare.json.
Compare ratios within one run; the CPU differs between machines.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

SCHEDULES = ("interleaved", "sequential", "parallel")
PROMPT = "Write a short story about a lighthouse keeper who collects maps."


def _cpu() -> str:
    from slmchat.engine.devices import cpu_info

    return str(cpu_info()["model"])


def _pair(left: Any, right: Any, lparams: Any, rparams: Any, schedule: str) -> dict[str, Any]:
    from slmchat.engine.generation.interleave import interleave
    from slmchat.engine.generation.prompting import ChatMessage

    msgs = [ChatMessage("user", PROMPT)]
    for engine in (left, right):
        engine._cache.reset()  # each pair from a cold prompt
    start = time.perf_counter()
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    count: dict[str, int] = {}

    def seen(side: str, chunk: Any) -> None:
        now = time.perf_counter() - start
        if chunk.new_tokens:
            first.setdefault(side, now)
            last[side] = now
            count[side] = chunk.new_tokens

    if schedule == "parallel":
        import threading

        os.environ["SLMCHAT_THREADS"] = "1"  # the engine sets this many torch threads
        try:
            def one(side: str, engine: Any, params: Any) -> None:
                for chunk in engine.stream_chat(msgs, params):
                    seen(side, chunk)

            threads = [threading.Thread(target=one, args=("left", left, lparams)),
                       threading.Thread(target=one, args=("right", right, rparams))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            os.environ.pop("SLMCHAT_THREADS", None)
    else:
        streams = {"left": left.stream_chat(msgs, lparams),
                   "right": right.stream_chat(msgs, rparams)}
        for side, chunk in interleave(streams, schedule):  # type: ignore[arg-type]
            seen(side, chunk)
    wall = time.perf_counter() - start
    out: dict[str, Any] = {"wall_s": round(wall, 2),
                           "total_tok_s": round(sum(count.values()) / wall, 1)}
    for side in ("left", "right"):
        span = last[side] - first[side]
        out[side] = {"ttft_s": round(first[side], 3), "tokens": count[side],
                     "tok_s": round((count[side] - 1) / span, 1) if span > 0 else 0.0}
    return out


def run(tokens: int, reps: int) -> dict[str, Any]:
    from slmchat.engine.devices import configure_threads
    from slmchat.engine.generation.sampling import SamplingParams
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.session import Engine

    threads = configure_threads()
    greedy = SamplingParams(temperature=0, repetition_penalty=1.0, max_new_tokens=tokens,
                            ignore_eos=True, seed=1)
    warm = SamplingParams(temperature=0.8, repetition_penalty=1.0, max_new_tokens=tokens,
                          ignore_eos=True, seed=1)
    left = Engine()
    left.load(ModelSpec(path="default", device="cpu", dtype="fp32"))
    app = Engine()  # what the chat loads by default: the runtime "auto" picks
    app.load(ModelSpec(path="default"))
    pairs = {
        "fp32 vs cpu-int8": (left, left.companion(ModelSpec(
            path="default", device="cpu", dtype="fp32", quant="cpu-int8")), greedy),
        "same model, temperature 0 vs 0.8": (left, left.companion(), warm),
        "app default model, temperature 0 vs 0.8": (app, app.companion(), warm),
    }
    results: dict[str, Any] = {}
    for name, (left, right, rparams) in pairs.items():
        # Each side alone first: the baseline the pair is compared with.
        alone = {}
        for side, (engine, params) in {"left": (left, greedy), "right": (right, rparams)}.items():
            one = _pair(engine, engine.companion(), params, params, "sequential")
            alone[side] = one["left"]
        results[name] = {"alone": alone, "runtimes": {
            side: f"{e.info.runtime} {e.info.quant}" if e.info else "?"
            for side, e in (("left", left), ("right", right))}}
        for schedule in SCHEDULES:
            runs = [_pair(left, right, greedy, rparams, schedule) for _ in range(reps)]
            best = min(runs, key=lambda r: r["wall_s"])
            results[name][schedule] = best
    return {"machine": {"cpu": _cpu(), "cores": os.cpu_count(), "torch_threads": threads},
            "model": "SmolLM2-135M-Instruct (default)", "tokens": tokens, "reps": reps,
            "pairs": results}


def table(report: dict[str, Any]) -> str:
    rows = [("pair", "schedule", "both done s", "total tok/s", "left 1st token s",
             "right 1st token s", "left tok/s", "right tok/s")]
    for name, res in report["pairs"].items():
        alone = res["alone"]
        runtimes = res.get("runtimes") or {}
        if runtimes:
            name = f"{name} ({runtimes['left']} | {runtimes['right']})"
        rows.append((name, "each alone", "", "", f"{alone['left']['ttft_s']:.2f}",
                     f"{alone['right']['ttft_s']:.2f}", f"{alone['left']['tok_s']:.1f}",
                     f"{alone['right']['tok_s']:.1f}"))
        for schedule in SCHEDULES:
            r = res[schedule]
            rows.append(("", schedule, f"{r['wall_s']:.1f}", f"{r['total_tok_s']:.1f}",
                         f"{r['left']['ttft_s']:.2f}", f"{r['right']['ttft_s']:.2f}",
                         f"{r['left']['tok_s']:.1f}", f"{r['right']['tok_s']:.1f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "compare.json"))
    args = ap.parse_args()
    report = run(args.tokens, args.reps)
    print(f"{report['machine']['cpu']}, {report['machine']['torch_threads']} torch threads, "
          f"{args.tokens} tokens per reply, best of {args.reps}")
    print(table(report))
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
