"""Fine-tune benchmark: slmchat's default recipe vs the classic HF ``Trainer`` notebook.

Both train the default model (SmolLM2-135M-Instruct) on the same text (docstrings of a
fixed list of Python standard-library modules, so the text is identical everywhere and
needs no download) for the same number of *real* text tokens, then both are scored by
the same function on the same held-out 256-token blocks (text neither recipe trained on).

* slmchat: LoRA r=8 on all linear layers, lr 2e-4 warmup+cosine, 256-token packed blocks
  (documents joined with EOS), batch 4, bf16 autocast where the CPU supports it (auto).
* notebook: full fine-tune, fp32, one example per document, ``padding="max_length"`` to
  512 (truncated), ``DataCollatorForLanguageModeling(mlm=False)``, ``Trainer`` with lr
  2e-5, batch 4, one pass.

Train tokens/s counts real (non-pad) tokens over the wall time of the training loop.
Usage: ``python benchmarks/bench_finetune.py [--tokens 4096]``; prints a table and writes
``benchmarks/results/finetune.json``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (see runs.spawn)

MODULES = ("collections", "itertools", "functools", "json", "pathlib", "argparse",
           "subprocess", "threading", "datetime", "re", "shutil", "textwrap", "string",
           "heapq", "bisect", "contextlib", "dataclasses", "enum", "logging", "csv")
EVAL_BLOCKS = 8
BLOCK = 256


def corpus() -> list[str]:
    """One document per documented public object (module, class, function)."""
    import importlib

    docs = []
    for name in MODULES:
        mod = importlib.import_module(name)
        if inspect.getdoc(mod):
            docs.append(f"{name}\n\n{inspect.getdoc(mod)}")
        for attr in sorted(dir(mod)):
            if attr.startswith("_"):
                continue
            obj = getattr(mod, attr)
            if getattr(obj, "__module__", None) != name:
                continue
            doc = inspect.getdoc(obj)
            if doc and len(doc) > 80:
                docs.append(f"{name}.{attr}\n\n{doc}")
    return docs


def split_docs(docs: list[str], tok: Any, n_tokens: int) -> tuple[list[str], list[list[int]]]:
    """Held-out blocks from every 10th document; the rest is training text."""
    from slmchat.engine.finetune.data import Document, make_blocks, tokenize_documents

    held = [d for i, d in enumerate(docs) if i % 10 == 5]
    train = [d for i, d in enumerate(docs) if i % 10 != 5]
    eval_blocks = make_blocks(tokenize_documents([Document("x", text=d) for d in held], tok),
                              BLOCK)[:EVAL_BLOCKS]
    return train, eval_blocks


def eval_loss(model: Any, blocks: list[list[int]]) -> float:
    from slmchat.engine.finetune.args import TrainArgs
    from slmchat.engine.finetune.loop import evaluate

    return evaluate(model, blocks, TrainArgs(data="x", max_eval_blocks=EVAL_BLOCKS), "cpu",
                    False)


def run_slmchat(model_dir: Path, train_docs: list[str], eval_blocks: list[list[int]],
                n_tokens: int) -> dict[str, Any]:
    from slmchat.engine.finetune.args import TrainArgs
    from slmchat.engine.finetune.data import Document, PreparedData, make_blocks, tokenize_documents
    from slmchat.engine.finetune.loop import build_model, make_optimizer, train_steps, use_bf16
    from slmchat.engine.finetune.plan import load_tokenizer

    args = TrainArgs(data="x", model=str(model_dir), device="cpu")  # defaults = the recipe
    steps = n_tokens // (args.block_size * args.batch_size * args.grad_accum)
    args.max_steps = steps
    tok = load_tokenizer(str(model_dir))
    blocks = make_blocks(tokenize_documents([Document("x", text=d) for d in train_docs], tok),
                         args.block_size)
    bf16 = use_bf16(args, "cpu")
    model, _, _ = build_model(args, "cpu", bf16)
    opt = make_optimizer(model, args)
    prepared = PreparedData(train=blocks[:steps * args.batch_size], eval=eval_blocks,
                            preview=None)  # type: ignore[arg-type]
    t0, tokens, losses = time.perf_counter(), 0, []
    for row in train_steps(model, opt, prepared, args, device="cpu", bf16=bf16, start_step=0,
                           total=steps):
        tokens += row["tokens"]
        losses.append(row["loss"])
    wall = time.perf_counter() - t0
    return {"recipe": "slmchat default (LoRA r8, packed 256, bf16 auto)", "bf16": bf16,
            "steps": steps, "real_tokens": tokens, "processed_tokens": tokens,
            "train_s": wall, "train_tok_s": tokens / wall, "last_train_loss": losses[-1],
            "heldout_loss": eval_loss(model, eval_blocks)}


def run_notebook(model_dir: Path, train_docs: list[str], eval_blocks: list[list[int]],
                 n_tokens: int, workdir: Path) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    tok = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    # Take documents in order until they hold n_tokens real tokens (same text budget).
    picked, real = [], 0
    for d in train_docs:
        n = min(512, len(tok(d)["input_ids"]))
        if real + n > n_tokens:
            break
        picked.append(d)
        real += n
    ds = Dataset.from_dict({"text": picked}).map(
        lambda b: tok(b["text"], padding="max_length", truncation=True, max_length=512),
        batched=True, remove_columns=["text"])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32,
                                                 local_files_only=True)
    targs = TrainingArguments(
        output_dir=str(workdir / "hf-out"), per_device_train_batch_size=4, num_train_epochs=1,
        learning_rate=2e-5, weight_decay=0.01, use_cpu=True, report_to="none",
        save_strategy="no", logging_steps=10, disable_tqdm=True, seed=0,
        dataloader_num_workers=0,
    )
    trainer = Trainer(model=model, args=targs, train_dataset=ds,
                      data_collator=DataCollatorForLanguageModeling(tok, mlm=False))
    t0 = time.perf_counter()
    out = trainer.train()
    wall = time.perf_counter() - t0
    return {"recipe": "HF Trainer notebook (full, fp32, pad 512)", "bf16": False,
            "steps": out.global_step, "real_tokens": real, "processed_tokens": len(ds) * 512,
            "train_s": wall, "train_tok_s": real / wall, "last_train_loss": out.training_loss,
            "heldout_loss": eval_loss(trainer.model, eval_blocks)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=4096, help="real training tokens")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" /
                        "finetune.json")
    ns = parser.parse_args()
    from slmchat.engine.offline import ensure_offline

    ensure_offline()
    import tempfile

    import torch

    from slmchat.engine.devices import configure_threads
    from slmchat.engine.finetune.plan import load_tokenizer
    from slmchat.engine.model.default import ensure_default_model
    from slmchat.engine.model.loader import load
    from slmchat.engine.model.spec import ModelSpec

    threads = configure_threads()
    model_dir = ensure_default_model()
    tok = load_tokenizer(str(model_dir))
    train_docs, eval_blocks = split_docs(corpus(), tok, ns.tokens)
    base = load(ModelSpec(path=str(model_dir), dtype="fp32", device="cpu"))
    before = eval_loss(base.model, eval_blocks)
    del base
    results = [run_slmchat(model_dir, train_docs, eval_blocks, ns.tokens)]
    with tempfile.TemporaryDirectory() as tmp:
        results.append(run_notebook(model_dir, train_docs, eval_blocks, ns.tokens, Path(tmp)))
    report = {
        "benchmark": "finetune", "model": "SmolLM2-135M-Instruct", "tokens": ns.tokens,
        "heldout_blocks": len(eval_blocks), "block": BLOCK, "heldout_loss_before": before,
        "heldout_ppl_before": math.exp(before), "results": results,
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": threads,
                    "torch": torch.__version__, "python": sys.version.split()[0],
                    "load_avg_1m": os.getloadavg()[0]},
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print(f"held-out loss before training: {before:.4f} (ppl {math.exp(before):.2f}); "
          f"{ns.tokens} real train tokens each")
    header = f"{'recipe':48s} {'steps':>5s} {'tok/s':>7s} {'padded':>7s} {'train s':>8s} " \
             f"{'held-out loss':>13s} {'ppl':>7s}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r['recipe']:48s} {r['steps']:5d} {r['train_tok_s']:7.1f} "
              f"{r['processed_tokens']:7d} {r['train_s']:8.1f} {r['heldout_loss']:13.4f} "
              f"{math.exp(r['heldout_loss']):7.2f}")
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {ns.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
