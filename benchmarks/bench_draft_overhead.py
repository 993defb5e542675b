"""What draft-model speculation costs when its drafts are rejected (issue 27).

The loaded model is a checkpoint built from SmolLM2-1.7B's real config with random
weights (bench_runtimes.make_checkpoint, cached outside the repo); the draft is the
embedded SmolLM2-135M, whose tokenizer the 1.7B shares. Random weights agree with the
draft on almost nothing, so every draft is rejected and what is measured is the price of
drafting: the draft's own steps plus the verification forwards, less what the adaptive
draft length saves by pausing after drafts that fail. That overhead should stay under
10 %.

Each round runs ``slmchat generate`` on the transformers runtime (the runtime where the
verified reply is exactly the plain one) with ``--speculative off`` and ``--speculative
draft``, interleaved, greedy, the same prompt; the best decode tok/s of each mode over
the rounds is kept (other work on the machine only ever slows a round), and the two
replies must be the same text.

Usage: python benchmarks/bench_draft_overhead.py [--rounds 2] [--tokens 64]
       [--cache ~/.cache/slmchat-bench] [--out benchmarks/results/draft_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

PROMPT = "Tell me a short story about a lighthouse keeper and a storm."


def run_mode(folder: Path, mode: str, tokens: int, dtype: str = "fp32") -> dict[str, Any]:
    cmd = [sys.executable, "-m", "slmchat", "generate", PROMPT, "--model", str(folder),
           "--runtime", "transformers", "--dtype", dtype, "--speculative", mode, "--stats", "-t", "0",
           "--repetition-penalty", "1", "--max-new-tokens", str(tokens)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{mode}: slmchat generate failed: {proc.stderr.strip()[-400:]}")
    stats_line = next(line for line in reversed(proc.stderr.splitlines())
                      if line.startswith("stats "))
    stats = dict(re.findall(r"(\w+)=(\S+)", stats_line))
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    return {"mode": mode, "dtype": dtype, "reply": proc.stdout, "wall_s": wall,
            "decode_tok_s": float(stats["decode_tok_s"]),
            "new_tokens": int(stats["new_tokens"]),
            "speculative": stats.get("speculative"), "drafted": int(stats.get("drafted", 0)),
            "accepted": int(stats.get("accepted", 0)), "peak_rss_mb": float(stats["peak_rss_mb"]),
            "warnings": warnings}


def _cpu_flags() -> list[str]:
    """The instruction sets that decide which bf16 kernels run (AVX512_BF16, AMX)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines()
                  if ln.startswith("flags")), [])
    return sorted(f for f in flags if f.startswith(("avx512", "amx")) or f == "avx2")


def main() -> int:
    from bench_runtimes import make_checkpoint

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "slmchat-bench"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "draft_overhead.json"))
    ap.add_argument("--dtypes", default="fp32",
                    help="comma list of the loaded model's dtypes (fp32, bf16), interleaved")
    args = ap.parse_args()
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    folder = make_checkpoint("1.7b", Path(args.cache).expanduser() / "1.7b" / "bf16")
    runs: list[dict[str, Any]] = []
    for r in range(args.rounds):
        for dtype in dtypes:
            for mode in ("off", "draft"):
                res = run_mode(folder, mode, args.tokens, dtype)
                res["round"] = r
                runs.append(res)
                print(f"round {r} {dtype} {mode:5s} decode {res['decode_tok_s']:.2f} tok/s "
                      f"drafted {res['drafted']} accepted {res['accepted']} "
                      f"({res['speculative']})", flush=True)
    results: dict[str, Any] = {}
    print()
    print("| 1.7B shape, random weights, transformers | decode tok/s (best of "
          f"{args.rounds}) | drafts kept/drafted | same reply |")
    print("|---|---|---|---|")
    for dtype in dtypes:
        mine = [x for x in runs if x["dtype"] == dtype]
        best = {m: max(x["decode_tok_s"] for x in mine if x["mode"] == m) for m in ("off", "draft")}
        same = len({x["reply"] for x in mine}) == 1
        drafted = sum(x["drafted"] for x in mine if x["mode"] == "draft")
        accepted = sum(x["accepted"] for x in mine if x["mode"] == "draft")
        ratio = best["draft"] / best["off"]
        print(f"| {dtype}, plain | {best['off']:.2f} | | |")
        print(f"| {dtype}, draft: SmolLM2-135M | {best['draft']:.2f} ({ratio:.2f}x, overhead "
              f"{(1 - ratio) * 100:.1f} %) | {accepted}/{drafted} | {'yes' if same else 'NO'} |")
        results[dtype] = {"best_decode_tok_s": best, "ratio": ratio, "same_reply": same,
                          "drafted": drafted, "accepted": accepted}
    report = {"machine": {"cpu": platform.processor() or platform.machine(),
                          "cores": os.cpu_count(), "load_avg_1m": os.getloadavg()[0],
                          "flags": _cpu_flags()},
              "date": time.strftime("%Y-%m-%d %H:%M"), "tokens": args.tokens,
              "by_dtype": results, "runs": runs}
    Path(args.out).write_text(json.dumps(report, indent=2))
    return 0 if all(r["same_reply"] for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
