"""Greedy answers against fp32: how often each runtime gives the default model's fp32 reply.

The reference is transformers fp32 (the shipped Q4_1 weights dequantized, so every other
runtime is a re-quantization or the same 4-bit weights with quantized activations). Each
of the 96 chat prompts (the first 32 as in earlier runs) is answered greedily (40 new tokens)
by every path; a path agrees on a prompt when its reply is the same text. Also the first
position where the reply differs (later is better), the decode speed of each path on these
replies, on how many prompts only one of the two quantized runtimes agrees, and a
teacher-forced count: fp32's replies fed to each runtime, and at how many of their
positions its top token is fp32's.

Usage: python benchmarks/bench_agreement.py [--out FILE]
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

# 64 more, written before any of them was run, so that a count over 96 prompts is not a
# count over prompts chosen to flatter a runtime (32 prompts leave a difference of 2 in
# the noise); the first 32 are kept as they were for comparison with earlier runs.
MORE_PROMPTS = [
    "What is the tallest mountain in the world?", "Give me a recipe idea for dinner.",
    "What is an atom?", "Write a limerick about a frog.", "How far is the Moon from Earth?",
    "What is the freezing point of water in Fahrenheit?", "Name a mammal that can fly.",
    "What is the plural of mouse?", "Explain what a noun is.", "Who painted the Mona Lisa?",
    "What is 15 plus 27?", "How do plants drink water?", "Write a sentence using the word 'brave'.",
    "What is the main ingredient in guacamole?", "Why do leaves change colour in autumn?",
    "Give me two ideas for a rainy day.", "What is a prime number?", "Name the four seasons.",
    "How many continents are there?", "What does DNA stand for?", "Write a motto for a bakery.",
    "What is the speed of light?", "Suggest a title for a poem about the night.",
    "How do I say hello in German?", "What is the capital of Japan?",
    "Describe the smell of rain.", "What is a verb?", "Who was Albert Einstein?",
    "What instrument has 88 keys?", "Give me a tip for learning a language.",
    "What is the largest ocean?", "Write a two-line poem about coffee.",
    "What causes thunder?", "Name three kinds of trees.", "What is a volcano?",
    "How many hours are in a week?", "What is the opposite of ancient?",
    "Explain what a computer program is.", "What animal is known as the king of the jungle?",
    "Write a short thank-you note to a teacher.", "What is the sun made of?",
    "How do birds stay warm in winter?", "What is the capital of Italy?",
    "Give me a word that rhymes with light.", "What is the function of the heart?",
    "Name a famous scientist.", "What is 100 divided by 4?", "Why do we need sleep?",
    "Describe a sunset in one sentence.", "What is a rainbow made of?",
    "Suggest a name for a dog.", "What do pandas eat?", "What is the longest river in Africa?",
    "How do you make a paper airplane?", "What is an adjective?",
    "Write a slogan for a recycling campaign.", "What year did the first person walk on the Moon?",
    "What is the difference between weather and climate?", "Name a vegetable that is orange.",
    "What is a galaxy?", "Give me one reason to exercise.", "What is the capital of Canada?",
    "Write a riddle about time.", "What does a thermometer measure?",
]
PATHS = {
    "fp32 transformers (reference)": {"runtime": "transformers", "dtype": "fp32", "model": "folder"},
    "onnx int8": {"runtime": "onnx", "model": "folder"},
    "llamacpp Q4_1 (shipped file)": {"runtime": "llamacpp", "model": "gguf"},
}


def _engine(cfg: dict[str, str]) -> Any:
    """An engine with the default model loaded as ``cfg`` says (a PATHS entry)."""
    from slmchat.engine.model.default import ensure_default_model, gguf_path
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.session import Engine

    path = str(gguf_path()) if cfg["model"] == "gguf" else str(ensure_default_model())
    engine = Engine()
    engine.load(ModelSpec(path=path, runtime=cfg["runtime"], dtype=cfg.get("dtype", "auto"),  # type: ignore[arg-type]
                          device="cpu"))
    return engine


def replies(cfg: dict[str, str]) -> tuple[list[str], float]:
    from slmchat.engine.generation.prompting import ChatMessage
    from slmchat.engine.generation.sampling import SamplingParams

    engine = _engine(cfg)
    out, tokens, seconds = [], 0, 0.0
    params = SamplingParams(temperature=0, repetition_penalty=1.0, max_new_tokens=40)
    for prompt in PROMPTS + MORE_PROMPTS:
        start = time.perf_counter()
        chunks = list(engine.stream_chat([ChatMessage("user", prompt)], params))
        seconds += time.perf_counter() - start
        tokens += chunks[-1].new_tokens
        out.append("".join(c.text for c in chunks))
    return out, tokens / seconds


def forced(cfg: dict[str, str], ref: list[str]) -> dict[str, float]:
    """Teacher-forced: the fp32 reply fed after each prompt, and at every position of it
    whether this path's top token is fp32's next token (fp32's greedy pick there), plus
    how far its top logit leads fp32's token where they differ. Thousands of positions,
    so a difference between runtimes is not lost in the noise of 96 whole replies."""
    import numpy as np

    from slmchat.engine.generation.prompting import ChatMessage
    from slmchat.engine.generation.sampling import SamplingParams
    from slmchat.engine.runtimes import backend_for

    engine = _engine(cfg)
    lm = engine.loaded
    assert lm is not None
    params = SamplingParams(temperature=0, repetition_penalty=1.0, max_new_tokens=40)
    same = total = 0
    gaps: list[float] = []
    for prompt, reply in zip(PROMPTS + MORE_PROMPTS, ref, strict=True):
        ids = engine.preview_prompt([ChatMessage("user", prompt)], params).input_ids
        want = list(lm.tokenizer(reply, add_special_tokens=False)["input_ids"])[:40]
        state = backend_for(lm).new_state()
        state.reserve(len(ids) + len(want) + 1)
        rows = [np.asarray(state.extend(ids), dtype=np.float32).reshape(-1)]
        for at in range(0, len(want) - 1, 8):  # rows after each reply token but the last
            got = np.asarray(state.score(want[at:min(at + 8, len(want) - 1)]), dtype=np.float32)
            rows.extend(got.reshape(-1, got.shape[-1]))
        state.close()
        for row, token in zip(rows, want, strict=False):
            total += 1
            top = int(row.argmax())
            if top == token:
                same += 1
            else:
                gaps.append(float(row[top] - row[token]))
    return {"positions": total, "top1_same": same, "top1_rate": same / max(1, total),
            "median_gap_where_different": float(np.median(gaps)) if gaps else 0.0}


def _first_difference(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "agreement.json"))
    args = ap.parse_args()
    results: dict[str, Any] = {}
    ref, _ = replies(PATHS["fp32 transformers (reference)"])
    first = len(PROMPTS)
    for name, cfg in PATHS.items():
        got, tps = (ref, 0.0) if "reference" in name else replies(cfg)
        same = [a == b for a, b in zip(got, ref, strict=True)]
        results[name] = {"agree": sum(same), "of": len(same),
                         "agree_first_32": sum(same[:first]), "same": same,
                         "tok_s_incl_prefill": tps,
                         "mean_first_difference_chars": sum(
                             _first_difference(a, b) for a, b in zip(got, ref, strict=True)) / len(ref),
                         "replies": got}
    paired = [n for n in results if "reference" not in n]
    for name in paired:
        results[name]["teacher_forced"] = forced(PATHS[name], ref)
    print("| path | same greedy reply as fp32, all prompts | first 32 prompts "
          "| mean chars before the first difference |")
    print("|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['agree']} of {r['of']} | {r['agree_first_32']} of {first} "
              f"| {r['mean_first_difference_chars']:.0f} |")
    print("| path | teacher-forced positions where the top token is fp32's | median logit gap where not |")
    print("|---|---|---|")
    for name in paired:
        f = results[name]["teacher_forced"]
        print(f"| {name} | {f['top1_same']} of {f['positions']} ({100 * f['top1_rate']:.2f} %) "
              f"| {f['median_gap_where_different']:.3f} |")
    if len(paired) == 2:  # the prompts on which only one of the two runtimes gives fp32's reply
        a, b = (results[n]["same"] for n in paired)
        only = {paired[0]: sum(x and not y for x, y in zip(a, b, strict=True)),
                paired[1]: sum(y and not x for x, y in zip(a, b, strict=True))}
        results["only_this_one_agrees"] = only
        print("only one agrees: " + ", ".join(f"{n} {k}" for n, k in only.items()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
