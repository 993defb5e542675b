"""Generation benchmark: each path runs in its own subprocess (clean peak RSS).

Measures, on one model: load time, prefill tokens/s on a 512-token prompt, decode
tokens/s over 200 tokens, time to first token (TTFT) with a ~1,000-token chat history,
TTFT of a follow-up turn in that chat (KV prefix reuse), peak RSS, the wall time from
starting ``slmchat generate`` to its first token (cold start), and perplexity on a
held-out text (Python's licence, the same file on every machine). Paths: slmchat on the
onnx runtime (ONNX Runtime GenAI int8) and on transformers at each dtype/quantization,
plain ``model.generate()`` as the reference, and llama.cpp (llama-cpp-python) on the
shipped GGUF file when it is installed (never a dependency). Paths run in interleaved
rounds (every path once per round, so a busy neighbour on a shared machine hits them
all alike) and the table shows medians with the range.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PREFILL_TOKENS = 512
DECODE_TOKENS = 200
HISTORY_TOKENS = 1000

_PARAGRAPH = (
    "Small language models run on ordinary laptops and keep private text on the machine. "
    "They answer questions, summarise notes and draft messages without a network. "
    "A good terminal assistant streams its reply as it is written, lets the user stop it, "
    "and remembers every conversation in a local database. "
)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _history(n_turns: int) -> list[Any]:
    from slmchat.engine.generation.prompting import ChatMessage

    msgs = [ChatMessage("system", "You are a concise assistant.")]
    for i in range(n_turns):
        msgs.append(ChatMessage("user", f"Question {i}: {_PARAGRAPH}"))
        msgs.append(ChatMessage("assistant", f"Answer {i}: {_PARAGRAPH}"))
    msgs.append(ChatMessage("user", "Summarise our conversation in one sentence."))
    return msgs


def _chat_of_about(engine: Any, tokens: int) -> list[Any]:
    from slmchat.engine.generation.sampling import SamplingParams

    n = 1
    while True:
        msgs = _history(n)
        if engine.preview_prompt(msgs, SamplingParams(max_new_tokens=64)).prompt_tokens >= tokens:
            return msgs
        n += 1


def run_slmchat(model: str, dtype: str, quant: str, runner: str = "auto",
                device: str = "auto", runtime: str = "transformers") -> dict[str, Any]:
    from slmchat.engine import runtimes
    from slmchat.engine.devices import thread_count
    from slmchat.engine.generation.decode import stream_backend
    from slmchat.engine.generation.prompting import ChatMessage
    from slmchat.engine.generation.sampling import SamplingParams
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.session import Engine

    torch_runtime = runtimes.get(runtime).uses_torch
    if torch_runtime:  # torch's threads; the other runtimes set their own (no torch import)
        from slmchat.engine.devices import configure_threads

        configure_threads()
    threads = thread_count()
    t0 = time.perf_counter()
    engine = Engine(lite=not torch_runtime)
    info = engine.load(ModelSpec(path=model, dtype=dtype, quant=quant,  # type: ignore[arg-type]
                                 runner=runner, device=device,  # type: ignore[arg-type]
                                 runtime=runtime))  # type: ignore[arg-type]
    load_s = time.perf_counter() - t0
    if info.runtime != runtime:
        raise RuntimeError(f"asked for the {runtime} runtime, got {info.runtime}: {info.warnings}")
    lm = engine.loaded
    assert lm is not None
    ids = _prompt_ids(lm.tokenizer)
    greedy = SamplingParams(temperature=0, repetition_penalty=1.0, max_new_tokens=1)
    backend = runtimes.backend_for(lm)
    list(stream_backend(backend, lm.tokenizer, ids[:32], greedy))  # warm-up
    last = list(stream_backend(backend, lm.tokenizer, ids, greedy))[-1]
    prefill = last.prefill_tps
    dec = SamplingParams(temperature=0, repetition_penalty=1.0, max_new_tokens=DECODE_TOKENS,
                         ignore_eos=True)
    last = list(stream_backend(backend, lm.tokenizer, ids[:16], dec))[-1]
    decode = last.decode_tps
    # Chat TTFT with ~1,000 tokens of history, then a follow-up turn reusing the prefix.
    msgs = _chat_of_about(engine, HISTORY_TOKENS)
    short = SamplingParams(temperature=0, repetition_penalty=1.0, max_new_tokens=24)
    chunks = list(engine.stream_chat(msgs, short))
    ttft = chunks[-1].ttft_s or 0.0
    history_tokens = chunks[-1].prompt_tokens
    reply = "".join(c.text for c in chunks)
    msgs = [*msgs, ChatMessage("assistant", reply), ChatMessage("user", "Thanks. One more?")]
    follow = list(engine.stream_chat(msgs, short))[-1]
    out = {
        "load_s": load_s, "prefill_tok_s": prefill, "decode_tok_s": decode,
        "ttft_chat_s": ttft, "history_tokens": history_tokens,
        "ttft_followup_s": follow.ttft_s or 0.0, "followup_cached_tokens": follow.cached_tokens,
        "peak_rss_mb": _peak_rss_mb(), "weights_mb": info.footprint_bytes / 2**20,
        "threads": threads, "device": info.device, "runtime": info.runtime,
        "torch_imported": "torch" in sys.modules,
    }
    return {**out, **(_gpu_mem() if torch_runtime else {})}


def _gpu_mem() -> dict[str, float]:
    import torch

    if not torch.cuda.is_available():
        return {}
    return {"peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20}


def _prompt_ids(tokenizer: Any) -> list[int]:
    text = _PARAGRAPH * 40
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return list(ids[:PREFILL_TOKENS])


def run_hf_generate(model: str, dtype: str, device: str = "auto") -> dict[str, Any]:
    """The reference: plain transformers ``model.generate()``."""
    import torch

    from slmchat.engine.devices import configure_threads
    from slmchat.engine.model.loader import load
    from slmchat.engine.model.spec import ModelSpec

    threads = configure_threads()
    t0 = time.perf_counter()
    lm = load(ModelSpec(path=model, dtype=dtype, device=device))  # type: ignore[arg-type]
    load_s = time.perf_counter() - t0
    ids = torch.tensor([_prompt_ids(lm.tokenizer)], device=lm.info.device)
    kw = {"do_sample": False, "pad_token_id": lm.tokenizer.pad_token_id}
    lm.model.generate(ids[:, :32], max_new_tokens=2, **kw)  # warm-up
    t = time.perf_counter()
    lm.model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kw)
    prefill_s = time.perf_counter() - t
    short = ids[:, :16]
    t = time.perf_counter()
    lm.model.generate(short, max_new_tokens=1, min_new_tokens=1, **kw)
    first = time.perf_counter() - t
    t = time.perf_counter()
    lm.model.generate(short, max_new_tokens=DECODE_TOKENS, min_new_tokens=DECODE_TOKENS, **kw)
    total = time.perf_counter() - t
    return {
        "load_s": load_s, "prefill_tok_s": ids.shape[1] / prefill_s,
        "decode_tok_s": (DECODE_TOKENS - 1) / max(total - first, 1e-9),
        "peak_rss_mb": _peak_rss_mb(), "threads": threads, **_gpu_mem(),
    }


def run_llama_cpp(gguf: str, free_cores: bool = False) -> dict[str, Any]:
    """llama.cpp through llama-cpp-python, when installed (never a requirement).

    ``free_cores``: give it the thread rule the onnx runtime uses (the cores other
    processes leave free), for a like-for-like comparison on a busy machine."""
    from llama_cpp import Llama

    from slmchat.engine.devices import BusyCores, onnx_thread_count, physical_cores

    threads = onnx_thread_count(BusyCores()) if free_cores else physical_cores()
    t0 = time.perf_counter()
    llm = Llama(model_path=gguf, n_threads=threads, n_threads_batch=threads, n_ctx=4096,
                n_batch=512, verbose=False)
    load_s = time.perf_counter() - t0
    text = _PARAGRAPH * 40
    ids = llm.tokenize(text.encode(), add_bos=False)[:PREFILL_TOKENS]
    llm.eval(ids[:32])
    llm.reset()
    t = time.perf_counter()
    llm.eval(ids)
    prefill = len(ids) / (time.perf_counter() - t)
    llm.reset()
    llm.eval(ids[:16])
    t = time.perf_counter()
    for _ in range(DECODE_TOKENS):
        tok = llm.sample(temp=0.0)
        llm.eval([tok])
    decode = DECODE_TOKENS / (time.perf_counter() - t)
    # TTFT with a ~1,000-token chat, rendered with the same chat template (the converted
    # default model's copy of the GGUF's tokenizer) and tokenized by llama.cpp itself.
    from slmchat.engine.model.default import ensure_default_model
    from slmchat.engine.model.lite import LiteTokenizer

    tok = LiteTokenizer(ensure_default_model())
    n = 1
    while True:
        msgs = [{"role": m.role, "content": m.content} for m in _history(n)]
        text = tok.apply_chat_template(msgs, add_generation_prompt=True)
        chat_ids = llm.tokenize(text.encode(), add_bos=False, special=True)
        if len(chat_ids) >= HISTORY_TOKENS:
            break
        n += 1
    llm.reset()
    t = time.perf_counter()
    llm.eval(chat_ids)
    tok = llm.sample(temp=0.0)
    ttft = time.perf_counter() - t
    for _ in range(20):  # a short reply, then a follow-up turn on the same KV cache
        llm.eval([tok])
        tok = llm.sample(temp=0.0)
    follow_text = "<|im_end|>\n<|im_start|>user\nThanks. One more?<|im_end|>\n<|im_start|>assistant\n"
    follow_ids = llm.tokenize(follow_text.encode(), add_bos=False, special=True)
    t = time.perf_counter()
    llm.eval([tok, *follow_ids])
    llm.sample(temp=0.0)
    follow = time.perf_counter() - t
    return {"load_s": load_s, "prefill_tok_s": prefill, "decode_tok_s": decode,
            "ttft_chat_s": ttft, "history_tokens": len(chat_ids), "ttft_followup_s": follow,
            "peak_rss_mb": _peak_rss_mb(), "threads": threads}


PATHS: dict[str, dict[str, str]] = {
    "slmchat onnx int8": {"kind": "slmchat", "dtype": "auto", "quant": "none", "runtime": "onnx"},
    # The llamacpp runtime on the shipped GGUF: slmchat's loop over llama.cpp, same file as
    # the llama.cpp rows below.
    "slmchat llamacpp Q4_1 gguf": {"kind": "slmchat", "dtype": "auto", "quant": "none",
                                   "runtime": "llamacpp", "model": "gguf"},
    "hf-generate fp32 (reference)": {"kind": "hf", "dtype": "fp32"},
    "slmchat fp32 (hf runner)": {"kind": "slmchat", "dtype": "fp32", "quant": "none",
                                 "runner": "hf"},
    "slmchat fp32": {"kind": "slmchat", "dtype": "fp32", "quant": "none"},
    "slmchat bf16": {"kind": "slmchat", "dtype": "bf16", "quant": "none"},
    "slmchat cpu-int8": {"kind": "slmchat", "dtype": "fp32", "quant": "cpu-int8"},
    "llama.cpp Q4_1 gguf": {"kind": "llama_cpp"},
    "llama.cpp Q4_1 gguf (free-core threads)": {"kind": "llama_cpp", "threads": "free"},
}
# `make bench` / `slmchat bench` without --paths: the runtimes a user chooses between.
DEFAULT_PATHS = ("slmchat onnx int8", "slmchat llamacpp Q4_1 gguf", "slmchat fp32",
                 "llama.cpp Q4_1 gguf",
                 "llama.cpp Q4_1 gguf (free-core threads)")


def _model_for(cfg: dict[str, str], model: str) -> str:
    """The file a path runs: the shipped GGUF for GGUF paths, else ``model``."""
    if cfg.get("model") != "gguf":
        return model
    from slmchat.engine.model.default import gguf_path

    return str(gguf_path())


def _child(name: str, model: str) -> dict[str, Any]:
    cfg = PATHS[name]
    model = _model_for(cfg, model)
    if cfg["kind"] == "hf":
        return run_hf_generate(model, cfg["dtype"])
    if cfg["kind"] == "slmchat":
        return run_slmchat(model, cfg["dtype"], cfg["quant"], cfg.get("runner", "auto"),
                           runtime=cfg.get("runtime", "transformers"))
    from slmchat.engine.model.default import gguf_path

    return run_llama_cpp(str(gguf_path()), free_cores=cfg.get("threads") == "free")


def machine() -> dict[str, Any]:
    import torch

    from slmchat.engine.devices import cpu_info, physical_cores

    return {"cpu": cpu_info()["model"], "physical_cores": physical_cores(), "torch": torch.__version__,
            "python": platform.python_version(), "cuda": torch.cuda.is_available()}


PPL_TOKENS = 2000
COLD_PROMPT = "Name three rivers in Europe."


def heldout_text() -> str:
    """Python's licence: the same text everywhere, shipped with every Python."""
    import sysconfig

    for base in (sysconfig.get_paths()["stdlib"], str(Path(sys.base_prefix) / "lib")):
        path = Path(base) / "LICENSE.txt"
        if path.is_file():
            return path.read_text(encoding="utf-8")
    import argparse
    import inspect

    return inspect.getsource(argparse)  # a long, stable text when the licence is missing


def run_ppl(name: str, model: str) -> dict[str, Any]:
    """Perplexity of the first PPL_TOKENS tokens of the held-out text, one window."""
    cfg = PATHS[name]
    model = _model_for(cfg, model)
    text = heldout_text()
    if cfg["kind"] == "llama_cpp":
        return _llama_cpp_ppl(text)
    from slmchat.engine import runtimes
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.tools.perplexity import evaluate

    runtime = cfg.get("runtime", "transformers")
    dtype = cfg.get("dtype", "fp32")
    lm = runtimes.load(ModelSpec(path=model, dtype=dtype, quant=cfg.get("quant", "none"),  # type: ignore[arg-type]
                                 runner=cfg.get("runner", "auto"), runtime=runtime))  # type: ignore[arg-type]
    r = evaluate(lm, text, window=PPL_TOKENS, stride=PPL_TOKENS, max_tokens=PPL_TOKENS)
    return {"ppl": r.perplexity, "ppl_tokens": r.tokens}


def _llama_cpp_ppl(text: str) -> dict[str, Any]:
    import numpy as np
    from llama_cpp import Llama

    from slmchat.engine.devices import physical_cores
    from slmchat.engine.model.default import gguf_path

    n = physical_cores()
    llm = Llama(model_path=str(gguf_path()), n_ctx=4096, n_threads=n, n_threads_batch=n,
                logits_all=True, verbose=False)
    ids = llm.tokenize(text.encode(), add_bos=False)[:PPL_TOKENS]
    llm.eval(ids)
    logits = np.asarray(llm.scores[: len(ids) - 1], dtype=np.float64)
    top = logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    nll = lse - logits[np.arange(len(ids) - 1), ids[1:]]
    return {"ppl": float(np.exp(nll.mean())), "ppl_tokens": len(ids) - 1}


def cold_generate(name: str, model: str) -> float | None:
    """Seconds from starting `slmchat generate` to the first byte of its reply."""
    cfg = PATHS[name]
    if cfg["kind"] != "slmchat":
        return None
    model = _model_for(cfg, model)
    cmd = [sys.executable, "-m", "slmchat", "generate", COLD_PROMPT, "--model", model,
           "--max-new-tokens", "4", "-t", "0", "--runtime", cfg.get("runtime", "transformers")]
    if cfg.get("dtype", "auto") != "auto":
        cmd += ["--dtype", cfg["dtype"]]
    if cfg.get("quant", "none") != "none":
        cmd += ["--quant", cfg["quant"]]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    first: float | None = None
    while True:
        byte = proc.stdout.read(1)
        if not byte:
            break
        if first is None and not byte.isspace():
            first = time.perf_counter() - start
    proc.wait()
    return first if proc.returncode == 0 else None


def _spawn(args: list[str], model: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "slmchat.bench", *args, "--model", model],
        capture_output=True, text=True, env={**os.environ}, timeout=1800,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        err = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        return {"error": err[:200]}
    return dict(json.loads(lines[-1]))


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of each numeric metric over the rounds, with [min, max] under ``range``."""
    ok = [r for r in rounds if "error" not in r]
    if not ok:
        return rounds[-1] if rounds else {"error": "no rounds"}
    out: dict[str, Any] = {"rounds": len(ok), "range": {}}
    for key in ok[0]:
        vals = [r[key] for r in ok if isinstance(r.get(key), int | float)
                and not isinstance(r.get(key), bool)]
        if len(vals) == len(ok):
            out[key] = _median(vals)
            out["range"][key] = [min(vals), max(vals)]
        else:
            out[key] = ok[-1][key]
    return out


def run_all(model: str, paths: list[str], out: Path | None, rounds: int = 3,
            ppl: bool = True) -> dict[str, Any]:
    import importlib.util

    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in paths}
    results: dict[str, Any] = {}
    live = []
    for name in paths:
        if PATHS[name]["kind"] == "llama_cpp" and importlib.util.find_spec("llama_cpp") is None:
            results[name] = {"skipped": "llama-cpp-python not installed"}
        else:
            live.append(name)
    for r in range(rounds):
        for name in live:  # interleaved: each round runs every path once
            row = _spawn(["--child", name], model)
            cold = cold_generate(name, model)
            if cold is not None and "error" not in row:
                row["cold_first_token_s"] = cold
            runs[name].append(row)
            print(f"  round {r + 1}/{rounds}: {name}", file=sys.stderr)
    for name in live:
        results[name] = summarize(runs[name])
        if ppl and "error" not in results[name] and PATHS[name].get("threads") != "free":
            results[name].update(_spawn(["--child", name, "--ppl"], model))
            print(f"  perplexity: {name}", file=sys.stderr)
    report = {"machine": machine(), "model": model, "prefill_tokens": PREFILL_TOKENS,
              "decode_tokens": DECODE_TOKENS, "ppl_tokens": PPL_TOKENS, "rounds": rounds,
              "results": results, "date": time.strftime("%Y-%m-%d %H:%M")}
    print(format_table(report))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
        print(f"wrote {out}")
    return report


def _peer(res: dict[str, Any]) -> dict[str, Any]:
    """The faster llama.cpp variant: the ratio is against the best the peer did."""
    peers = [r for n, r in res.items() if n.startswith("llama.cpp") and "decode_tok_s" in r]
    return max(peers, key=lambda r: r["decode_tok_s"], default={})


def format_table(report: dict[str, Any]) -> str:
    res = report["results"]
    peer = _peer(res)
    cols = ["path", "load s", "prefill tok/s", "decode tok/s", "x llama.cpp", "TTFT 1k s",
            "x llama.cpp", "follow-up s", "cold gen s", "peak RSS MB", "ppl"]
    rows = [cols]

    def f(v: Any, fmt: str = "{:.1f}") -> str:
        return fmt.format(v) if isinstance(v, int | float) else "-"

    def rng(r: dict[str, Any], key: str, fmt: str) -> str:
        lo_hi = (r.get("range") or {}).get(key)
        base = f(r.get(key), fmt)
        if not lo_hi or lo_hi[0] == lo_hi[1]:
            return base
        return f"{base} [{fmt.format(lo_hi[0])}-{fmt.format(lo_hi[1])}]"

    def ratio(a: Any, b: Any) -> str:
        return f"{a / b:.2f}x" if isinstance(a, int | float) and isinstance(b, int | float) and b else "-"

    for name, r in res.items():
        if "decode_tok_s" not in r:
            rows.append([name, r.get("error") or r.get("skipped", ""), *[""] * (len(cols) - 2)])
            continue
        rows.append([
            name, f(r.get("load_s"), "{:.2f}"), f(r.get("prefill_tok_s")),
            rng(r, "decode_tok_s", "{:.1f}"), ratio(r.get("decode_tok_s"), peer.get("decode_tok_s")),
            rng(r, "ttft_chat_s", "{:.2f}"), ratio(r.get("ttft_chat_s"), peer.get("ttft_chat_s")),
            rng(r, "ttft_followup_s", "{:.3f}"), rng(r, "cold_first_token_s", "{:.2f}"),
            f(r.get("peak_rss_mb"), "{:.0f}"), f(r.get("ppl"), "{:.2f}"),
        ])
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(cols))]
    lines = [" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    m = report["machine"]
    head = (f"slmchat generation benchmark - {m['cpu']}, {m['physical_cores']} physical cores, "
            f"torch {m['torch']}, medians of {report.get('rounds', 1)} interleaved rounds "
            f"[min-max]; prefill {report['prefill_tokens']} tok, decode {report['decode_tokens']} "
            f"tok, ppl on {report.get('ppl_tokens', '?')} tokens of Python's licence")
    return head + "\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="slmchat bench")
    add_arguments(p)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--ppl", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    return run(args)


def add_arguments(p: Any) -> None:
    p.add_argument("--model", default="default", help="model to benchmark (default model)")
    p.add_argument("--paths", default=",".join(DEFAULT_PATHS),
                   help="comma-separated subset of: " + ", ".join(PATHS) + "; or 'all'")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    p.add_argument("--no-ppl", action="store_true", help="skip the perplexity runs")
    p.add_argument("--out", default="benchmarks/results/generate.json", help="JSON output")


def run(args: Any) -> int:
    from slmchat.engine.offline import ensure_offline

    if getattr(args, "child", None) and PATHS[args.child]["kind"] == "llama_cpp" and \
            os.environ.get("SLMCHAT_OMP_DEFAULTED") == "1":
        # The peer runs as its users run it: llama.cpp with OpenMP's default (spinning)
        # wait policy, not the passive one slmchat picks for itself.
        os.environ.pop("OMP_WAIT_POLICY", None)
        os.environ.pop("SLMCHAT_OMP_DEFAULTED", None)
        from slmchat.engine.offline import _OFFLINE_VARS

        os.environ.update(_OFFLINE_VARS)
    else:
        ensure_offline()
    if getattr(args, "child", None):
        result = run_ppl(args.child, args.model) if args.ppl else _child(args.child, args.model)
        print(json.dumps(result))
        return 0
    names = list(PATHS) if args.paths == "all" else [n.strip() for n in args.paths.split(",")
                                                     if n.strip()]
    unknown = [n for n in names if n not in PATHS]
    if unknown:
        from slmchat.errors import InvalidParameterError

        raise InvalidParameterError(f"unknown benchmark path(s): {', '.join(unknown)}")
    if args.model == "default":  # convert once up front, not inside a timed child
        from slmchat.engine.model.default import ensure_default_model

        args.model = str(ensure_default_model())
    from slmchat.engine import runtimes
    from slmchat.engine.model.spec import ModelSpec

    for name in names:
        runtime = PATHS[name].get("runtime")
        if not runtime or runtimes.get(runtime).uses_torch:
            continue  # the CPU runtimes' copies are built once up front, untimed
        runtimes.load(ModelSpec(path=_model_for(PATHS[name], args.model),
                                runtime=runtime),  # type: ignore[arg-type]
                      progress=lambda msg, frac: print(f"  {msg}", file=sys.stderr))
    run_all(args.model, names, Path(args.out) if args.out else None, rounds=max(1, args.rounds),
            ppl=not args.no_ppl)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
