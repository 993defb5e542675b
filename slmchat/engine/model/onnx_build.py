"""Child process: build an ONNX Runtime GenAI copy of a checkpoint (``python -m`` this).

Run in its own process by model/onnx.py so that the builder's imports (torch,
transformers, onnx) and its memory never land in the chat process, and so that its
chatter goes to a pipe the parent turns into a progress line. Steps: lay out a prepared
Hugging Face folder (links to the weights; an adapter merged into its base first),
patch what the builder needs (``rope_theta`` at the top level of config.json, a
``PreTrainedTokenizerFast`` tokenizer class), then run the builder with int8 weights
for the CPU and last-token logits only (``prune_lm_head``: a 1,000-token prefill then
computes one row of the LM head, not 1,000).

Lines starting with ``slmchat:`` are meant for the parent; the last line of a failure
is ``slmchat-error: <one line>``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                   "special_tokens_map.json", "generation_config.json")


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.symlink(src.resolve(), dst)
    except OSError:
        shutil.copy2(src, dst)


def _merge_adapter(base: Path, adapter: Path, out: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32,
                                                 trust_remote_code=False, local_files_only=True)
    merged = PeftModel.from_pretrained(model, str(adapter), is_trainable=False).merge_and_unload()
    merged.save_pretrained(str(out))
    for name in TOKENIZER_FILES:
        if (base / name).is_file() and not (out / name).exists():
            shutil.copy2(base / name, out / name)


def prepare(source: Path, prep: Path, adapter: Path | None) -> None:
    """A folder the builder accepts, without copying the weights where they can be linked."""
    prep.mkdir(parents=True, exist_ok=True)
    if adapter is not None:
        print("slmchat: merging the adapter into its base", flush=True)
        _merge_adapter(source, adapter, prep)
    else:
        for item in source.iterdir():
            if item.is_file() and item.name not in ("config.json", "tokenizer_config.json"):
                _link_or_copy(item, prep / item.name)
        shutil.copy2(source / "config.json", prep / "config.json")
        if (source / "tokenizer_config.json").is_file():
            shutil.copy2(source / "tokenizer_config.json", prep / "tokenizer_config.json")
    cfg_path = prep / "config.json"
    cfg = json.loads(cfg_path.read_text())
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    if "rope_theta" not in cfg and isinstance(rope, dict) and "rope_theta" in rope:
        cfg["rope_theta"] = rope["rope_theta"]
    cfg_path.write_text(json.dumps(cfg, indent=2))
    tok_path = prep / "tokenizer_config.json"
    tok = json.loads(tok_path.read_text()) if tok_path.is_file() else {}
    tok["tokenizer_class"] = "PreTrainedTokenizerFast"
    tok_path.write_text(json.dumps(tok, indent=2))


def build(prep: Path, out: Path, cache: Path, precision: str, prune: bool) -> None:
    from onnxruntime_genai.models.builder import create_model, parse_extra_options

    extra = ["hf_token=false", *(["prune_lm_head=true"] if prune else [])]
    options = parse_extra_options("", str(prep), str(out), precision, "cpu", str(cache), extra)
    create_model("", str(prep), str(out), precision, "cpu", str(cache), **options)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m slmchat.engine.model.onnx_build")
    p.add_argument("--source", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--adapter", default=None)
    p.add_argument("--precision", default="int8", choices=("int8", "int4", "fp32"))
    p.add_argument("--full-logits", action="store_true",
                   help="keep logits for every position (perplexity), not only the last")
    args = p.parse_args(argv)
    from slmchat.engine.offline import ensure_offline

    ensure_offline()
    out = Path(args.out)
    try:
        with tempfile.TemporaryDirectory(prefix="slmchat-onnx-") as work:
            prep = Path(work) / "hf"
            prepare(Path(args.source), prep, Path(args.adapter) if args.adapter else None)
            print("slmchat: building", flush=True)
            build(prep, out, Path(work) / "cache", args.precision, prune=not args.full_logits)
            for name in TOKENIZER_FILES:  # the builder re-saves the tokenizer; keep the originals
                src = prep / name
                if src.is_file():
                    shutil.copyfile(src, out / name)
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        print(f"slmchat-error: {type(exc).__name__}: {lines[0] if lines else ''}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
