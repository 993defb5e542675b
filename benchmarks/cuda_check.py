"""CUDA check and figures: run on a machine with an NVIDIA GPU.

    python benchmarks/cuda_check.py --model DIR [--random-from CONFIG_DIR] [--out FILE]

With ``--random-from``, builds a model with random weights from a config + tokenizer
folder (e.g. the default model's, without its weights) - speed does not depend on the
weight values, so this measures the default model's architecture where its weights
cannot travel. Checks: device auto picks CUDA with bf16; the fast runner matches the
transformers forward (fp32, TF32 off) token for token; cancellation within one token;
KV prefix reuse; bitsandbytes 8-bit and 4-bit load and generate. Then the benchmark
figures for each path. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any


def build_random(config_dir: Path, out: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(str(config_dir))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(config_dir)).save_pretrained(str(out))
    return out


def checks(model_dir: str, device: str = "cuda") -> dict[str, Any]:
    import torch

    from slmchat.engine.generation.decode import CancelToken, stream_generate
    from slmchat.engine.generation.prompting import ChatMessage
    from slmchat.engine.generation.sampling import SamplingParams
    from slmchat.engine.model.loader import load
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.session import Engine

    out: dict[str, Any] = {}
    lm = load(ModelSpec(path=model_dir))
    out["auto_device"], out["auto_dtype"] = lm.info.device, lm.info.dtype
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    lm32 = load(ModelSpec(path=model_dir, dtype="fp32", device=device))
    ids = lm32.tokenizer("The history of Rome begins")["input_ids"]
    p = SamplingParams(temperature=0, max_new_tokens=64, ignore_eos=True, repetition_penalty=1.0)
    fast = [c.text for c in stream_generate(lm32.model, lm32.tokenizer, ids, p, runner_kind="fast")]
    ref = [c.text for c in stream_generate(lm32.model, lm32.tokenizer, ids, p, runner_kind="hf")]
    out["fast_equals_hf_fp32"] = "".join(fast) == "".join(ref)
    cancel = CancelToken()
    at = None
    last = None
    for last in stream_generate(lm.model, lm.tokenizer, ids,
                                SamplingParams(seed=1, max_new_tokens=300, ignore_eos=True),
                                cancel):
        if last.new_tokens >= 5 and at is None:
            at = last.new_tokens
            t = threading.Thread(target=cancel.cancel)
            t.start()
            t.join()
    out["cancel_ok"] = bool(last and last.finish_reason == "cancelled"
                            and at is not None and last.new_tokens <= at + 1)
    engine = Engine(lm)
    msgs = [ChatMessage("user", "Name a colour.")]
    reply = "".join(c.text for c in engine.stream_chat(msgs, SamplingParams(temperature=0,
                                                                            max_new_tokens=12)))
    msgs += [ChatMessage("assistant", reply), ChatMessage("user", "Another?")]
    follow = list(engine.stream_chat(msgs, SamplingParams(temperature=0, max_new_tokens=12)))[-1]
    out["prefix_reuse_tokens"] = follow.cached_tokens
    for quant in ("8bit", "4bit"):
        try:
            q = load(ModelSpec(path=model_dir, quant=quant, device=device))  # type: ignore[arg-type]
            t = time.perf_counter()
            last = list(stream_generate(q.model, q.tokenizer, ids,
                                        SamplingParams(temperature=0, max_new_tokens=64,
                                                       ignore_eos=True)))[-1]
            out[f"bnb_{quant}"] = {"ok": last.new_tokens == 64, "decode_tok_s": last.decode_tps,
                                   "footprint_mb": q.info.footprint_bytes / 2**20,
                                   "wall_s": time.perf_counter() - t}
        except Exception as exc:
            out[f"bnb_{quant}"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--random-from", default=None)
    ap.add_argument("--out", default="benchmarks/results/cuda.json")
    args = ap.parse_args()
    from slmchat.engine.offline import ensure_offline

    ensure_offline()
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device here", file=sys.stderr)
        return 2
    model = Path(args.model)
    if args.random_from:
        model = build_random(Path(args.random_from), model)
    report: dict[str, Any] = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                              "weights": "random" if args.random_from else "real"}
    try:
        report["checks"] = checks(str(model))
    except Exception:
        report["checks_error"] = traceback.format_exc()[-2000:]
    from slmchat import bench

    results: dict[str, Any] = {}
    paths = {
        "hf-generate bf16 (reference)": lambda: bench.run_hf_generate(str(model), "bf16", "cuda"),
        "slmchat bf16 (hf runner)": lambda: bench.run_slmchat(str(model), "bf16", "none", "hf", "cuda"),
        "slmchat bf16": lambda: bench.run_slmchat(str(model), "bf16", "none", "auto", "cuda"),
        "slmchat fp32": lambda: bench.run_slmchat(str(model), "fp32", "none", "auto", "cuda"),
        "slmchat bnb 8bit": lambda: bench.run_slmchat(str(model), "bf16", "8bit", "auto", "cuda"),
        "slmchat bnb 4bit": lambda: bench.run_slmchat(str(model), "bf16", "4bit", "auto", "cuda"),
    }
    for name, fn in paths.items():
        torch.cuda.reset_peak_memory_stats()
        try:
            results[name] = fn()
        except Exception as exc:
            results[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        print(f"  measured {name}", file=sys.stderr, flush=True)
    report["results"] = results
    report["machine"] = {**bench.machine(), "cpu": report["gpu"]}
    report["prefill_tokens"], report["decode_tokens"] = bench.PREFILL_TOKENS, bench.DECODE_TOKENS
    print(json.dumps(report.get("checks", report.get("checks_error")), indent=1))
    print(bench.format_table(report))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
