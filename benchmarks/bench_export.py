"""GGUF exports checked against their source in llama.cpp itself, per quant type.

For each model and type: the export (``export_model``, verified by transformers on load-
back as always), then llama.cpp (llama-cpp-python) loads the file and, on the export's
three check prompts, its last-position logits are compared with the source model's
(Pearson correlation, max |Δlogit|) and its greedy continuation (16 tokens) with the
source's (tokens equal before the first difference). ``--ollama`` also puts the default
model's Q4_K_M into an Ollama store in a temp home and asks it a question through
``slmchat generate --model NAME``.

    python benchmarks/bench_export.py [--models tiny-qwen2,default] [--types f16,q8_0,q4_k_m]

Writes ``benchmarks/results/export.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = Path(__file__).parent / "results" / "export.json"
GREEDY = 16


def _source(name: str, tmp: Path) -> Path:
    if name == "tiny-qwen2":
        from tests.tinymodels import make_tiny_qwen2

        return make_tiny_qwen2(tmp / "tiny-qwen2")
    if name == "tiny-llama":
        from tests.tinymodels import make_tiny_llama

        return make_tiny_llama(tmp / "tiny-llama")
    from slmchat.engine.model.default import ensure_default_model

    return ensure_default_model()


def _llama_logits(llm: Any, lib: Any, ids: list[int], n_vocab: int) -> Any:
    import numpy as np

    llm.reset()
    llm._ctx.kv_cache_seq_rm(-1, 0, -1)
    llm.eval(ids)
    return np.ctypeslib.as_array(lib.llama_get_logits_ith(llm._ctx.ctx, -1),
                                 shape=(n_vocab,)).copy()


def compare(src: Any, gguf: Path) -> dict[str, float]:
    import llama_cpp
    import numpy as np
    import torch

    from slmchat.engine.tools.gguf_writer import VERIFY_PROMPTS

    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=256, n_threads=2, verbose=False)
    corr, worst, agree = [], 0.0, []
    for prompt in VERIFY_PROMPTS:
        ids = src.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            want = src.model(input_ids=torch.tensor([ids])).logits[0, -1].numpy()
            ref = src.model.generate(torch.tensor([ids]), max_new_tokens=GREEDY,
                                     do_sample=False, eos_token_id=None)[0, len(ids):].tolist()
        got = _llama_logits(llm, llama_cpp, ids, want.shape[0])
        corr.append(float(np.corrcoef(want, got)[0, 1]))
        worst = max(worst, float(np.abs(want - got).max()))
        seq, same = list(ids), 0
        for tok in ref:
            nxt = int(_llama_logits(llm, llama_cpp, seq, want.shape[0]).argmax())
            if nxt != tok:
                break
            same += 1
            seq.append(nxt)
        agree.append(same)
    return {"min_corr": min(corr), "max_abs_dlogit": worst,
            "greedy_same_tokens": f"{sum(agree)}/{GREEDY * len(agree)}"}


def ollama_answer(model_dir: Path, tmp: Path) -> dict[str, Any]:
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.tools.export import StoreTargets, export_model

    home = tmp / "home"
    env = {**os.environ, "SLMCHAT_TOOLS_HOME": str(home)}
    os.environ["SLMCHAT_TOOLS_HOME"] = str(home)
    t0 = time.perf_counter()
    res = export_model(ModelSpec(path=str(model_dir)), gguf_type="q4_k_m",
                       stores=StoreTargets(ollama="smollm2-export:q4"))
    export_s = time.perf_counter() - t0
    listed = subprocess.run([sys.executable, "-m", "slmchat", "models"], capture_output=True,
                            text=True, cwd=ROOT, env=env, timeout=300).stdout
    reply = subprocess.run([sys.executable, "-m", "slmchat", "generate", "--model",
                            "smollm2-export:q4", "What is the capital of France?", "-t", "0",
                            "--max-new-tokens", "24"], capture_output=True, text=True,
                           cwd=ROOT, env=env, timeout=300)
    return {"export_s": round(export_s, 1), "check": res.check.line if res.check else None,
            "listed": "smollm2-export:q4" in listed, "reply": reply.stdout.strip(),
            "rc": reply.returncode}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="tiny-qwen2,default")
    ap.add_argument("--types", default="f16,q8_0,q6_k,q5_k_m,q4_k_m")
    ap.add_argument("--ollama", action="store_true")
    ns = ap.parse_args()
    from slmchat.engine.model.loader import load
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.tools.export import export_model

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="slmchat-bench-export-") as scratch:
        tmp = Path(scratch)
        for name in ns.models.split(","):
            source = _source(name, tmp)
            src = load(ModelSpec(path=str(source), device="cpu", dtype="fp32"))
            for gguf_type in ns.types.split(","):
                out = tmp / f"{name}-{gguf_type}.gguf"
                res = export_model(ModelSpec(path=str(source)), gguf=out, gguf_type=gguf_type,
                                   overwrite=True)
                row = {"model": name, "type": gguf_type,
                       "transformers_top1": res.check.top1_agreement if res.check else None,
                       **compare(src, out)}
                print(row, file=sys.stderr)
                rows.append(row)
                out.unlink()
        extra = ollama_answer(_source("default", tmp), tmp) if ns.ollama else None
    print("| model | type | llama.cpp min corr | max abs dlogit | greedy tokens equal "
          "| transformers top-1 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['type']} | {r['min_corr']:.4f} | {r['max_abs_dlogit']:.3f} "
              f"| {r['greedy_same_tokens']} | {r['transformers_top1']:.3f} |")
    if extra:
        print(json.dumps(extra, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"rows": rows, "ollama": extra}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
