"""Speculative decoding on the default model (real weights): prompt lookup against plain
decoding, and against llama.cpp's own lookup mode on the same GGUF file, in one run.

Tasks that quote their input (summarise or answer from a pasted document, rewrite a
pasted paragraph, edit pasted code) and tasks that do not (free chat, a story), each
greedy (repetition penalty 1, EOS honoured, at most --tokens new tokens). For every
runtime and task the variants alternate for --rounds rounds and the best decode tok/s of
each is kept (other work on the machine only ever slows a round; ratios inside one run
are what to read). Decode tok/s: (new tokens - 1) / (time of the last token - time of
the first). Each variant's reply must be the plain reply token for token ("same").

Variants:
- ``slmchat`` plain / ``lookup``: our decode loop (engine/generation/decode.py) on the
  runtime's backend, without and with the prompt-lookup drafter;
- ``prediction`` (rewrite and code-edit tasks): the pasted paragraph or code as the
  request's prediction (OpenAI's Predicted Outputs), drafted in step with the reply;
- ``llama.cpp`` plain / ``llama.cpp lookup``: llama-cpp-python's own generate() on the
  same GGUF, without and with ``LlamaPromptLookupDecoding`` as ``draft_model``;
- on onnx, ``one-position steps``: plain decoding as before 2026-12-07, one position per
  decode forward (now every forward scores two or more, a guess beside a token without a
  draft, so that drafts are exact: backends/onnx.py).

Usage: python benchmarks/bench_speculative.py [--runtimes llamacpp,transformers,onnx]
       [--rounds 3] [--tokens 200] [--out benchmarks/results/speculative.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

DOC = (
    "The city council met on Tuesday to discuss the new public library. The library will "
    "open in March next year on the corner of Elm Street and Fifth Avenue. It will have "
    "three floors: the ground floor for children's books and a reading garden, the first "
    "floor for fiction and non-fiction, and the top floor for study rooms and a small "
    "computer lab with twenty machines. The building cost 4.2 million dollars, paid for by "
    "a state grant and a local bond approved by voters in 2023. Opening hours will be "
    "9 am to 8 pm on weekdays and 10 am to 5 pm on weekends. Library cards will be free "
    "for all residents, and visitors from neighbouring towns can buy a card for 15 dollars "
    "a year. The head librarian, Maria Lopez, said the library will also host weekly "
    "story hours, a monthly book club and free English classes for adults. The council "
    "voted six to one to approve the final budget for furniture and books."
)
PARAGRAPH = (
    "Our team finished the migration of the billing service last week. We moved the "
    "database to the new cluster, updated the connection settings in every service that "
    "reads invoices, and ran the old and new systems side by side for three days. No "
    "invoices were lost, and the response time of the billing page went down from 900 "
    "milliseconds to 250 milliseconds. The old servers will be switched off on Friday."
)
CODE = '''def load_users(path):
    users = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            name, email, age = line.split(",")
            users.append({"name": name, "email": email, "age": int(age)})
    return users


def adults(users):
    result = []
    for user in users:
        if user["age"] >= 18:
            result.append(user)
    return result
'''
TASKS: dict[str, tuple[bool, str]] = {
    "summarise document": (True, f"Summarise this document.\n\n{DOC}"),
    "answer from document": (True, f"{DOC}\n\nUsing the document above, what will the "
                                   "library have on each floor, and when is it open?"),
    "rewrite paragraph": (True, f"Rewrite this paragraph so that it is easier to read. "
                                f"Keep all the facts.\n\n{PARAGRAPH}"),
    "edit code": (True, f"Add type hints and docstrings to this Python code. Return the "
                        f"whole code.\n\n```python\n{CODE}```"),
    "free chat": (False, "What are some good habits for staying healthy while working "
                         "from home?"),
    "story": (False, "Write a short story about a lighthouse keeper who finds a message "
                     "in a bottle."),
}


# Predicted Outputs (OpenAI's ``prediction``): what a client sends as the expected reply,
# the code or text being edited.
PREDICTIONS = {"rewrite paragraph": PARAGRAPH, "edit code": CODE}


def _lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return platform.processor()
    for line in out.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _prompt(lm: Any, text: str, tokens: int) -> list[int]:
    """The chat prompt the app would build for ``text`` (its template, its token ids)."""
    from slmchat.engine.generation.prompting import ChatMessage, build_prompt

    return list(build_prompt(lm.tokenizer, [ChatMessage("user", text)],
                             lm.info.context_length, tokens).input_ids)


def _ours(backend: Any, tokenizer: Any, ids: list[int], tokens: int,
          lookup: bool, prediction: str | None = None) -> dict[str, Any]:
    """One reply through slmchat's loop: token ids, decode tok/s, drafted/accepted;
    with ``prediction``, that text is the draft (a request's Predicted Outputs)."""
    from slmchat.engine.generation.decode import PromptCache, stream_backend
    from slmchat.engine.generation.sampling import SamplingParams
    from slmchat.engine.generation.speculative import Drafter, LookupDrafter, PredictionDrafter

    params = SamplingParams(temperature=0, repetition_penalty=1.0, max_new_tokens=tokens)
    cache = PromptCache()
    drafter: Drafter | None = LookupDrafter([]) if lookup else None
    if prediction is not None:
        guess = tokenizer(prediction, add_special_tokens=False)["input_ids"]
        drafter = PredictionDrafter(list(guess), len(ids))
    chunks = list(stream_backend(backend, tokenizer, ids, params, prompt_cache=cache,
                                 drafter=drafter))
    last = chunks[-1]
    reply = cache.tokens[len(ids):]
    cache.reset()
    return {"tps": last.decode_tps, "tokens": reply, "new": last.new_tokens,
            "drafted": last.drafted, "accepted": last.accepted, "finish": last.finish_reason}


def _llama_own(llama: Any, ids: list[int], tokens: int, end: set[int]) -> dict[str, Any]:
    """llama-cpp-python's generate() (its draft_model, if any, set on ``llama``)."""
    llama.reset()
    out: list[int] = []
    first = last = 0.0
    for tok in llama.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
        now = time.perf_counter()
        if not out:
            first = now
        last = now
        if tok in end:
            break
        out.append(int(tok))
        if len(out) >= tokens:
            break
    tps = (len(out) - 1) / (last - first) if len(out) > 1 and last > first else 0.0
    return {"tps": tps, "tokens": out, "new": len(out)}


def _best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return max(rows, key=lambda r: r["tps"])


def bench_runtime(name: str, rounds: int, tokens: int) -> list[dict[str, Any]]:
    from slmchat.engine import runtimes
    from slmchat.engine.model.default import ensure_default_model, gguf_path
    from slmchat.engine.model.spec import ModelSpec

    folder = ensure_default_model()
    path = str(gguf_path()) if name == "llamacpp" else str(folder)
    lm = runtimes.load(ModelSpec(path=path, device="cpu", runtime=name))  # type: ignore[arg-type]
    backend = runtimes.backend_for(lm)
    threads = os.cpu_count() or 1
    lm_rt = runtimes.runtime_of(lm.info)
    from slmchat.engine.devices import BusyCores

    lm_rt.fit_threads(lm, BusyCores(), False)
    variants: dict[str, Any] = {
        "plain": lambda ids: _ours(backend, lm.tokenizer, ids, tokens, False),
        "lookup": lambda ids: _ours(backend, lm.tokenizer, ids, tokens, True),
        # the text the reply is expected to repeat, as a client's Predicted Outputs
        "prediction": lambda ids, guess: _ours(backend, lm.tokenizer, ids, tokens, False, guess),
    }
    if name == "llamacpp":
        import llama_cpp
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        end = set(lm.model.end_ids)
        # the llamacpp runtime's attention (flash attention where it has it), so that
        # "same" compares loops, not two attention kernels
        fa = bool(lm.model.flash_attn)
        own = llama_cpp.Llama(model_path=path, n_ctx=4096, n_batch=512, n_threads=lm.model.threads,
                              n_threads_batch=lm.model.threads, verbose=False, flash_attn=fa)
        own_lookup = llama_cpp.Llama(model_path=path, n_ctx=4096, n_batch=512,
                                     n_threads=lm.model.threads,
                                     n_threads_batch=lm.model.threads, verbose=False,
                                     flash_attn=fa,
                                     draft_model=LlamaPromptLookupDecoding(num_pred_tokens=10))
        variants["llama.cpp"] = lambda ids: _llama_own(own, ids, tokens, end)
        variants["llama.cpp lookup"] = lambda ids: _llama_own(own_lookup, ids, tokens, end)
    if name == "onnx":
        # The decode of earlier versions, for its cost: one-position forwards (plain only;
        # their rows round differently, so drafts there would not be exact).
        olm = runtimes.load(ModelSpec(path=path, device="cpu", runtime=name))  # type: ignore[arg-type]
        olm.model._slmchat_exact_rows = (olm.model.generation, False)
        obackend = runtimes.backend_for(olm)
        variants["one-position steps"] = lambda ids: _ours(obackend, olm.tokenizer, ids, tokens,
                                                           False)
    results = []
    for task, (quotes, text) in TASKS.items():
        ids = _prompt(lm, text, tokens)
        guess = PREDICTIONS.get(task)
        here = {v: fn for v, fn in variants.items() if v != "prediction" or guess}
        runs: dict[str, list[dict[str, Any]]] = {v: [] for v in here}
        for _ in range(rounds):
            for v, fn in here.items():
                runs[v].append(fn(ids, guess) if v == "prediction" else fn(ids))
        plain = _best(runs["plain"])
        row: dict[str, Any] = {"runtime": name, "task": task, "quotes": quotes,
                               "prompt_tokens": len(ids), "threads": threads}
        for v in here:
            best = _best(runs[v])
            n = min(len(best["tokens"]), len(plain["tokens"]))
            row[v] = {"decode_tps": round(best["tps"], 1), "new_tokens": best["new"],
                      "same": best["tokens"][:n] == plain["tokens"][:n]
                      and abs(len(best["tokens"]) - len(plain["tokens"])) <= 1}
            if "drafted" in best:
                row[v].update(drafted=best["drafted"], accepted=best["accepted"])
        results.append(row)
        _print_row(row, list(here))
    return results


def _print_row(row: dict[str, Any], variants: list[str]) -> None:
    base = row["plain"]["decode_tps"] or 1.0
    cells = []
    for v in variants:
        r = row[v]
        extra = f" {r['accepted']}/{r['drafted']}" if r.get("drafted") else ""
        cells.append(f"{v} {r['decode_tps']:6.1f} ({r['decode_tps'] / base:4.2f}x"
                     f"{'' if r['same'] else ' DIFF'}{extra})")
    print(f"{row['runtime']:12s} {row['task']:22s} " + " | ".join(cells), flush=True)


def markdown(results: list[dict[str, Any]]) -> str:
    """The README table: per runtime and task, plain tok/s and each variant's tok/s,
    ratio to plain, kept/drafted and whether its reply is the plain one."""
    lines = ["| runtime | task | quotes | plain tok/s | variant: tok/s (x plain), kept/drafted, same |",
             "|---|---|---|---|---|"]
    for row in results:
        base = row["plain"]["decode_tps"] or 1.0
        cells = []
        for v, r in row.items():
            if not isinstance(r, dict) or v == "plain":
                continue
            kept = f", {r['accepted']}/{r['drafted']}" if r.get("drafted") else ""
            cells.append(f"{v}: {r['decode_tps']:.1f} ({r['decode_tps'] / base:.2f}x){kept}, "
                         f"{'same' if r['same'] else '**differs**'}")
        lines.append(f"| {row['runtime']} | {row['task']} | {'yes' if row['quotes'] else 'no'} | "
                     f"{base:.1f} | {'; '.join(cells)} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runtimes", default="llamacpp,transformers,onnx")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--out", default="benchmarks/results/speculative.json")
    ap.add_argument("--table", metavar="JSON", default=None,
                    help="only print the README table of an earlier run's JSON")
    args = ap.parse_args()
    if args.table:
        print(markdown(json.loads(Path(args.table).read_text())["results"]))
        return 0
    results: list[dict[str, Any]] = []
    for name in args.runtimes.split(","):
        results += bench_runtime(name.strip(), args.rounds, args.tokens)
    meta = {"machine": _lscpu_model(), "cores": os.cpu_count(), "rounds": args.rounds,
            "max_new_tokens": args.tokens, "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print("\n" + markdown(results))
    print(f"\n{meta['machine']}, {meta['cores']} cores; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
