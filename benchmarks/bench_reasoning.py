"""What telling reasoning apart from the answer costs (generation/reasoning.py).

1. The layer alone: ``separate`` over a synthetic stream of one-token chunks (a 1,000-token
   reasoning block, then a 1,000-token answer), microseconds per chunk.
2. On the default model: the same greedy chat reply with the layer and with it replaced by
   a pass-through, interleaved, best of N rounds each (the machine is shared: only the
   ratio inside one run means something).

Usage: python benchmarks/bench_reasoning.py [--rounds 3] [--tokens 200]
       [--out benchmarks/results/reasoning.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def synthetic(n: int) -> list[Any]:
    from slmchat.engine.generation.decode import GenerationChunk

    words = ["<think>"] + [" step"] * (n // 2) + ["</think>"] + [" word"] * (n // 2)
    out = [GenerationChunk(text=w, new_tokens=i + 1, prompt_tokens=10, ttft_s=0.1,
                           prefill_tps=1.0, decode_tps=1.0, seed=0) for i, w in enumerate(words)]
    last = GenerationChunk(text="", new_tokens=len(words), prompt_tokens=10, ttft_s=0.1,
                           prefill_tps=1.0, decode_tps=1.0, seed=0, finish_reason="stop")
    return [*out, last]


def layer_us_per_chunk(n: int = 2000, rounds: int = 20) -> float:
    from slmchat.engine.generation.reasoning import separate

    chunks = synthetic(n)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = list(separate(iter(chunks)))
        best = min(best, time.perf_counter() - t0)
    assert "".join(c.text for c in out).count("word") == n // 2
    return best / len(chunks) * 1e6


def decode_rates(tokens: int, rounds: int) -> dict[str, float]:
    from slmchat.engine import session
    from slmchat.engine.generation.prompting import ChatMessage
    from slmchat.engine.generation.sampling import SamplingParams
    from slmchat.engine.model.default import ensure_default_model
    from slmchat.engine.model.spec import ModelSpec

    engine = session.Engine(lite=True)
    engine.load(ModelSpec(path=str(ensure_default_model())))
    msgs = [ChatMessage("user", "Tell me a long story about a lighthouse keeper.")]
    params = SamplingParams(temperature=0, max_new_tokens=tokens, ignore_eos=True)
    real = session._with_reasoning

    def passthrough(chunks: Iterator[Any], *_: Any) -> Iterator[Any]:
        return chunks

    best = {"with layer": 0.0, "without": 0.0}
    variants = [("with layer", real), ("without", passthrough)]
    for r in range(rounds):
        for name, fn in variants if r % 2 == 0 else variants[::-1]:  # alternate the order
            session._with_reasoning = fn  # type: ignore[assignment]
            last = list(engine.stream_chat(msgs, params, reuse_cache=False))[-1]
            best[name] = max(best[name], last.decode_tps)
    session._with_reasoning = real
    return best


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "reasoning.json"))
    args = ap.parse_args()
    us = layer_us_per_chunk()
    rates = decode_rates(args.tokens, args.rounds)
    ratio = rates["with layer"] / rates["without"] if rates["without"] else 0.0
    print(f"reasoning layer alone: {us:.2f} us per chunk (2,000-token synthetic stream)")
    print(f"| default model, greedy, {args.tokens} tokens, best of {args.rounds} | decode tok/s |")
    print("|---|---|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:.1f} |")
    print(f"with / without: {ratio:.3f}")
    result = {"layer_us_per_chunk": us, "decode_tps": rates, "ratio": ratio,
              "tokens": args.tokens, "rounds": args.rounds, "machine": platform.processor()
              or platform.machine()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
