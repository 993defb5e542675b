"""Generation benchmark: each path runs in its own subprocess (clean peak RSS).

Measures, on one model: load time, prefill tokens/s on a 512-token prompt, decode
tokens/s over 200 tokens, time to first token (TTFT) with a ~1,000-token chat history,
TTFT of a follow-up turn in that chat (KV prefix reuse), and peak RSS. Paths: slmchat's
engine at each dtype/quantization, plain ``model.generate()`` as the reference, and
llama.cpp (llama-cpp-python) on the GGUF file when it is installed.
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
                device: str = "auto") -> dict[str, Any]:
    from slmchat.engine.devices import configure_threads
    from slmchat.engine.generation.decode import stream_generate
    from slmchat.engine.generation.prompting import ChatMessage
    from slmchat.engine.generation.sampling import SamplingParams
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.session import Engine

    threads = configure_threads()
    t0 = time.perf_counter()
    engine = Engine()
    info = engine.load(ModelSpec(path=model, dtype=dtype, quant=quant,  # type: ignore[arg-type]
                                 runner=runner, device=device))  # type: ignore[arg-type]
    load_s = time.perf_counter() - t0
    lm = engine.loaded
    assert lm is not None
    ids = _prompt_ids(lm.tokenizer)
    greedy = SamplingParams(temperature=0, repetition_penalty=1.0, max_new_tokens=1)
    kind = lm.spec.runner
    list(stream_generate(lm.model, lm.tokenizer, ids[:32], greedy, runner_kind=kind))  # warm-up
    last = list(stream_generate(lm.model, lm.tokenizer, ids, greedy, runner_kind=kind))[-1]
    prefill = last.prefill_tps
    dec = SamplingParams(temperature=0, repetition_penalty=1.0, max_new_tokens=DECODE_TOKENS,
                         ignore_eos=True)
    last = list(stream_generate(lm.model, lm.tokenizer, ids[:16], dec, runner_kind=kind))[-1]
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
    return {
        "load_s": load_s, "prefill_tok_s": prefill, "decode_tok_s": decode,
        "ttft_chat_s": ttft, "history_tokens": history_tokens,
        "ttft_followup_s": follow.ttft_s or 0.0, "followup_cached_tokens": follow.cached_tokens,
        "peak_rss_mb": _peak_rss_mb(), "weights_mb": info.footprint_bytes / 2**20,
        "threads": threads, "device": info.device, **_gpu_mem(),
    }


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


def run_llama_cpp(gguf: str) -> dict[str, Any]:
    """llama.cpp through llama-cpp-python, when installed (never a requirement)."""
    from llama_cpp import Llama

    from slmchat.engine.devices import physical_cores

    threads = physical_cores()
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
    llm.sample(temp=0.0)
    ttft = time.perf_counter() - t
    return {"load_s": load_s, "prefill_tok_s": prefill, "decode_tok_s": decode,
            "ttft_chat_s": ttft, "history_tokens": len(chat_ids),
            "peak_rss_mb": _peak_rss_mb(), "threads": threads}


PATHS: dict[str, dict[str, str]] = {
    "hf-generate fp32 (reference)": {"kind": "hf", "dtype": "fp32"},
    "slmchat fp32 (hf runner)": {"kind": "slmchat", "dtype": "fp32", "quant": "none",
                                 "runner": "hf"},
    "slmchat fp32": {"kind": "slmchat", "dtype": "fp32", "quant": "none"},
    "slmchat bf16": {"kind": "slmchat", "dtype": "bf16", "quant": "none"},
    "slmchat cpu-int8": {"kind": "slmchat", "dtype": "fp32", "quant": "cpu-int8"},
    "llama.cpp Q4_1 gguf": {"kind": "llama_cpp"},
}


def _child(name: str, model: str) -> dict[str, Any]:
    cfg = PATHS[name]
    if cfg["kind"] == "hf":
        return run_hf_generate(model, cfg["dtype"])
    if cfg["kind"] == "slmchat":
        return run_slmchat(model, cfg["dtype"], cfg["quant"], cfg.get("runner", "auto"))
    from slmchat.engine.model.default import gguf_path

    return run_llama_cpp(str(gguf_path()))


def machine() -> dict[str, Any]:
    import torch

    from slmchat.engine.devices import physical_cores

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "physical_cores": physical_cores(), "torch": torch.__version__,
            "python": platform.python_version(), "cuda": torch.cuda.is_available()}


def run_all(model: str, paths: list[str], out: Path | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in paths:
        if PATHS[name]["kind"] == "llama_cpp":
            import importlib.util

            if importlib.util.find_spec("llama_cpp") is None:
                results[name] = {"skipped": "llama-cpp-python not installed"}
                continue
        proc = subprocess.run(
            [sys.executable, "-m", "slmchat.bench", "--child", name, "--model", model],
            capture_output=True, text=True, env={**os.environ}, timeout=1800,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            err = (proc.stderr.strip().splitlines() or ["failed"])[-1]
            results[name] = {"error": err[:200]}
        else:
            results[name] = json.loads(lines[-1])
        print(f"  measured {name}", file=sys.stderr)
    report = {"machine": machine(), "model": model, "prefill_tokens": PREFILL_TOKENS,
              "decode_tokens": DECODE_TOKENS, "results": results,
              "date": time.strftime("%Y-%m-%d %H:%M")}
    print(format_table(report))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
        print(f"wrote {out}")
    return report


def format_table(report: dict[str, Any]) -> str:
    res = report["results"]
    ref = res.get("hf-generate fp32 (reference)", {})
    peer = res.get("llama.cpp Q4_1 gguf", {})
    cols = ["path", "load s", "prefill tok/s", "decode tok/s", "x ref", "x llama.cpp",
            "TTFT 1k chat s", "follow-up s", "peak RSS MB"]
    rows = [cols]

    def f(v: Any, fmt: str = "{:.1f}") -> str:
        return fmt.format(v) if isinstance(v, int | float) else "-"

    for name, r in res.items():
        if "error" in r or "skipped" in r:
            rows.append([name, r.get("error") or r.get("skipped", ""), *[""] * 7])
            continue
        dec = r.get("decode_tok_s")
        rows.append([
            name, f(r.get("load_s"), "{:.2f}"), f(r.get("prefill_tok_s")), f(dec),
            f(dec / ref["decode_tok_s"], "{:.2f}x") if dec and ref.get("decode_tok_s") else "-",
            f(dec / peer["decode_tok_s"], "{:.2f}x") if dec and peer.get("decode_tok_s") else "-",
            f(r.get("ttft_chat_s"), "{:.3f}"), f(r.get("ttft_followup_s"), "{:.3f}"),
            f(r.get("peak_rss_mb"), "{:.0f}"),
        ])
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(cols))]
    lines = [" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    m = report["machine"]
    head = (f"slmchat generation benchmark - {m['cpu']}, {m['physical_cores']} physical cores, "
            f"torch {m['torch']}, prefill {report['prefill_tokens']} tok, "
            f"decode {report['decode_tokens']} tok")
    return head + "\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="slmchat bench")
    add_arguments(p)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    return run(args)


def add_arguments(p: Any) -> None:
    p.add_argument("--model", default="default", help="model to benchmark (default model)")
    p.add_argument("--paths", default=",".join(PATHS),
                   help="comma-separated subset of: " + ", ".join(PATHS))
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
        print(json.dumps(_child(args.child, args.model)))
        return 0
    names = [n.strip() for n in args.paths.split(",") if n.strip()]
    unknown = [n for n in names if n not in PATHS]
    if unknown:
        from slmchat.errors import InvalidParameterError

        raise InvalidParameterError(f"unknown benchmark path(s): {', '.join(unknown)}")
    if args.model == "default":  # convert once up front, not inside a timed child
        from slmchat.engine.model.default import ensure_default_model

        args.model = str(ensure_default_model())
    run_all(args.model, names, Path(args.out) if args.out else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
