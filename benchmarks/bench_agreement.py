"""Greedy answers against fp32: how often each runtime gives the default model's fp32 reply.

The reference is transformers fp32 (the shipped Q4_1 weights dequantized, so every other
runtime is a re-quantization or the same 4-bit weights with quantized activations). Each
of the 32 chat prompts is answered greedily (40 new tokens) by every path; a path agrees
on a prompt when its reply is the same text. Also the first position where the reply
differs (later is better) and the decode speed of each path on these replies.

Usage: python benchmarks/bench_agreement.py [--paths onnx,llamacpp] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [
    "What is the capital of France?", "Name three colours of the rainbow.",
    "Write a haiku about the sea.", "What is 12 times 7?", "Explain photosynthesis briefly.",
    "Give me a synonym for happy.", "How many legs does a spider have?",
    "Translate 'good morning' into Spanish.", "What is the boiling point of water?",
    "Write one sentence about autumn.", "Who wrote Romeo and Juliet?",
    "What does a CPU do?", "Suggest a name for a cat.", "What is the largest planet?",
    "How do I make a cup of tea?", "List two fruits that are red.",
    "What is the opposite of cold?", "Why is the sky blue?", "Write a short greeting for a card.",
    "What language is spoken in Brazil?", "Define the word 'gravity'.",
    "How many days are in a leap year?", "Give one tip for better sleep.",
    "What is Python used for?", "Name a famous painter.", "What is the square root of 81?",
    "Describe a rainbow in one sentence.", "What do bees make?",
    "Tell me a fun fact about octopuses.", "What is the chemical symbol for gold?",
    "How do you say thank you in French?", "Write a title for a story about a dragon.",
]
PATHS = {
    "fp32 transformers (reference)": {"runtime": "transformers", "dtype": "fp32", "model": "folder"},
    "onnx int8": {"runtime": "onnx", "model": "folder"},
    "llamacpp Q4_1 (shipped file)": {"runtime": "llamacpp", "model": "gguf"},
}


def replies(cfg: dict[str, str]) -> tuple[list[str], float]:
    from slmchat.engine.generation.prompting import ChatMessage
    from slmchat.engine.generation.sampling import SamplingParams
    from slmchat.engine.model.default import ensure_default_model, gguf_path
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.session import Engine

    path = str(gguf_path()) if cfg["model"] == "gguf" else str(ensure_default_model())
    engine = Engine()
    engine.load(ModelSpec(path=path, runtime=cfg["runtime"], dtype=cfg.get("dtype", "auto"),  # type: ignore[arg-type]
                          device="cpu"))
    out, tokens, seconds = [], 0, 0.0
    params = SamplingParams(temperature=0, repetition_penalty=1.0, max_new_tokens=40)
    for prompt in PROMPTS:
        start = time.perf_counter()
        chunks = list(engine.stream_chat([ChatMessage("user", prompt)], params))
        seconds += time.perf_counter() - start
        tokens += chunks[-1].new_tokens
        out.append("".join(c.text for c in chunks))
    return out, tokens / seconds


def _first_difference(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "agreement.json"))
    args = ap.parse_args()
    results: dict[str, Any] = {}
    ref, _ = replies(PATHS["fp32 transformers (reference)"])
    for name, cfg in PATHS.items():
        got, tps = (ref, 0.0) if "reference" in name else replies(cfg)
        same = [a == b for a, b in zip(got, ref, strict=True)]
        results[name] = {"agree": sum(same), "of": len(PROMPTS), "tok_s_incl_prefill": tps,
                         "mean_first_difference_chars": sum(
                             _first_difference(a, b) for a, b in zip(got, ref, strict=True)) / len(ref),
                         "replies": got}
    print("| path | same greedy reply as fp32 | mean chars before the first difference |")
    print("|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['agree']} of {r['of']} | {r['mean_first_difference_chars']:.0f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
