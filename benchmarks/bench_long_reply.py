"""Does decoding slow down as a reply grows? `python benchmarks/bench_long_reply.py`.

Measures on the default model (greedy, EOS ignored, one process, same prompt):
* decode tok/s over a 200-token reply and over a 2,000-token reply (and over the last
  200 tokens of the 2,000), through slmchat's Engine;
* the text layer alone (detokenizing + stop-string hold-back) per token at reply
  lengths 200 and 2,000: the incremental detokenizer used now, and the old loop that
  re-decoded the whole reply on every token, on the same token ids.
Prints a table and writes benchmarks/results/long_reply.json. Compare ratios within one
run; the CPU differs between machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

PROMPT = "Write a long story about a lighthouse keeper who collects maps."


def _cpu() -> str:
    from slmchat.engine.devices import cpu_info

    return str(cpu_info()["model"])


def _reply(engine: Any, n: int) -> list[float]:
    """Per-token arrival times of an n-token greedy reply."""
    from slmchat.engine.generation.prompting import ChatMessage
    from slmchat.engine.generation.sampling import SamplingParams

    params = SamplingParams(temperature=0, repetition_penalty=1.0, max_new_tokens=n, ignore_eos=True)
    stamps: list[float] = []
    last_count = 0
    for chunk in engine.stream_chat([ChatMessage("user", PROMPT)], params):
        now = time.perf_counter()
        stamps.extend([now] * (chunk.new_tokens - last_count))
        last_count = chunk.new_tokens
    engine._cache.reset()  # each reply from a cold prompt, like a new conversation
    return stamps


def _tps(stamps: list[float], start: int, end: int) -> float:
    span = stamps[end - 1] - stamps[start]
    return (end - 1 - start) / span if span > 0 else 0.0


def _text_layer_us(tokenizer: Any, ids: list[int], at: int, reps: int = 50) -> dict[str, float]:
    """Microseconds per token of the text layer when the reply is ``at`` tokens long."""
    from slmchat.engine.generation.textstream import IncrementalDetokenizer, StopFilter

    detok = IncrementalDetokenizer(tokenizer)
    stops = StopFilter(["\nUser:"])
    for t in ids[:at - 1]:
        stops.feed(detok.add(t))
    t0 = time.perf_counter()
    for _ in range(reps):
        d2 = IncrementalDetokenizer(tokenizer)
        d2.tokens, d2._prefix, d2._read = list(detok.tokens), detok._prefix, detok._read
        stops.feed(d2.add(ids[at - 1]))
    new_us = (time.perf_counter() - t0) / reps * 1e6
    t0 = time.perf_counter()
    for _ in range(reps):  # the old loop: decode the whole reply, scan it for stops
        text = tokenizer.decode(ids[:at], skip_special_tokens=True)
        _ = [text.find(s) for s in ("\nUser:",)]
    old_us = (time.perf_counter() - t0) / reps * 1e6
    return {"incremental_us": new_us, "full_redecode_us": old_us}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--short", type=int, default=200)
    ap.add_argument("--long", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved short/long rounds")
    ap.add_argument("--out", default="benchmarks/results/long_reply.json")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from slmchat.engine.devices import configure_threads
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.session import Engine

    threads = configure_threads()
    engine = Engine(lite=True)
    info = engine.load(ModelSpec(path=args.model))
    _reply(engine, 16)  # warm-up
    short, long_all, long_tail = [], [], []
    for _ in range(args.rounds):
        s = _reply(engine, args.short)
        short.append(_tps(s, 0, len(s)))
        stamps = _reply(engine, args.long)
        long_all.append(_tps(stamps, 0, len(stamps)))
        long_tail.append(_tps(stamps, len(stamps) - args.short, len(stamps)))
    lm = engine.loaded
    assert lm is not None
    ids = lm.tokenizer(PROMPT * 400, add_special_tokens=False)["input_ids"][: args.long]
    text = {n: _text_layer_us(lm.tokenizer, ids, n) for n in (args.short, args.long)}
    result = {
        "machine": {"cpu": _cpu(), "threads": threads, "python": platform.python_version(),
                    "load_avg_1m": os.getloadavg()[0]},
        "model": info.name, "runner": "lite" if lm.extra.get("lite") else lm.spec.runner,
        "decode_tok_s": {f"reply_{args.short}": statistics.median(short),
                         f"reply_{args.long}": statistics.median(long_all),
                         f"last_{args.short}_of_{args.long}": statistics.median(long_tail)},
        "rounds": {"short": short, "long": long_all, "long_tail": long_tail},
        "text_layer_us_per_token": {str(k): v for k, v in text.items()},
    }
    ratio = result["decode_tok_s"][f"reply_{args.long}"] / result["decode_tok_s"][f"reply_{args.short}"]
    result["ratio_long_to_short"] = ratio
    m = result["machine"]
    print(f"machine: {m['cpu']}, {threads} threads, load average {m['load_avg_1m']:.1f}")
    print(f"{'measure':<44}{'value':>12}")
    for k, v in result["decode_tok_s"].items():
        print(f"{'decode tok/s, ' + k:<44}{v:>12.1f}")
    print(f"{'ratio 2,000 / 200':<44}{ratio:>12.3f}")
    for n, v in text.items():
        print(f"{f'text layer us/token at {n}, incremental':<44}{v['incremental_us']:>12.1f}")
        print(f"{f'text layer us/token at {n}, full re-decode':<44}{v['full_redecode_us']:>12.1f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
