"""Child process: build an ONNX Runtime GenAI copy of a checkpoint (``python -m`` this).

Run in its own process by model/onnx.py so that the builder's imports (torch,
transformers, onnx) and its memory never land in the chat process, and so that its
chatter goes to a pipe the parent turns into a progress line. Steps: lay out a prepared
Hugging Face folder (links to the weights; an adapter merged into its base first),
patch what the builder needs (``rope_theta`` at the top level of config.json, a
``PreTrainedTokenizerFast`` tokenizer class), then run the builder with int8 weights
for the CPU and logits for a window of the last positions only (``prune_lm_head`` and
``logits_window``: a 1,000-token prefill then computes 16 rows of the LM head, not
1,000), then redo the int8 blocks with zero points (onnx_requant).

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


def build(prep: Path, out: Path, cache: Path, precision: str, prune: bool,
          window: int = 0) -> None:
    """The builder's copy; ``prune``: logits for the last position only, or with
    ``window`` > 0 for the last ``window`` positions (logits_window)."""
    from onnxruntime_genai.models.builder import create_model, parse_extra_options

    extra = ["hf_token=false", *(["prune_lm_head=true"] if prune or window else [])]
    options = parse_extra_options("", str(prep), str(out), precision, "cpu", str(cache), extra)
    create_model("", str(prep), str(out), precision, "cpu", str(cache), **options)
    if window:
        logits_window(out / "model.onnx", window)


def logits_window(model_file: Path, window: int) -> None:
    """Rewrite a copy pruned to last-position logits so that the LM head runs on the
    last ``window`` positions, the rows before them zeros.

    Verifying drafts needs a row of logits per drafted position (at most K_MAX + 1), but
    an LM head over every prompt position made a 1k-token prompt's first token 27 %
    slower (1.27 against 1.00 s on the default model). ONNX Runtime GenAI sizes the
    logits output by the sequence length unless it is fixed at 1, so the rows before the
    window are zeros (one memset, no LM head): ``Concat(ConstantOfShape([B, max(S - W,
    0), V]), LMHead(hidden[:, -W:]))``."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(model_file), load_external_data=False)
    g = m.graph
    gather = next(n for n in g.node if n.name == "/lm_head/prune/Gather")
    unsqueeze = next(n for n in g.node if n.name == "/lm_head/prune/Unsqueeze")
    head = next(n for n in g.node if n.input and n.input[0] == unsqueeze.output[0])
    hidden = gather.input[0]
    out = next(o for o in g.output if o.name == "logits")
    vocab = out.type.tensor_type.shape.dim[2].dim_value
    p = "/lm_head/window/"

    def const(name: str, values: list[int]) -> str:
        g.initializer.append(numpy_helper.from_array(np.array(values, dtype=np.int64), p + name))
        return p + name

    nodes = [
        helper.make_node("Slice", [hidden, const("starts", [-window]),
                                   const("ends", [np.iinfo(np.int64).max]), const("axes", [1])],
                         [p + "rows"], name=p + "Slice"),
        helper.make_node("Shape", [hidden], [p + "shape"], name=p + "Shape"),
        helper.make_node("Slice", [p + "shape", const("i0", [0]), const("i2", [2])],
                         [p + "batch_seq"], name=p + "BatchSeq"),
        helper.make_node("Sub", [p + "batch_seq", const("minus", [0, window])], [p + "sub"],
                         name=p + "Sub"),
        helper.make_node("Max", [p + "sub", const("zero", [0, 0])], [p + "pad_bs"], name=p + "Max"),
        helper.make_node("Concat", [p + "pad_bs", const("vocab", [vocab])], [p + "pad_shape"],
                         name=p + "PadShape", axis=0),
        helper.make_node("ConstantOfShape", [p + "pad_shape"], [p + "zeros"], name=p + "Zeros",
                         value=numpy_helper.from_array(np.zeros(1, dtype=np.float32))),
        helper.make_node("Concat", [p + "zeros", p + "logits"], ["logits"], name=p + "Concat",
                         axis=1),
    ]
    head.input[0] = p + "rows"
    head.output[0] = p + "logits"
    at = list(g.node).index(gather)
    g.node.remove(gather)
    g.node.remove(unsqueeze)
    for i, node in enumerate(nodes[:-1]):
        g.node.insert(at + i, node)
    g.node.append(nodes[-1])  # after the LM head
    dim = out.type.tensor_type.shape.dim[1]
    dim.ClearField("dim_value")
    dim.dim_param = "sequence_length"
    onnx.save(m, str(model_file))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m slmchat.engine.model.onnx_build")
    p.add_argument("--source", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--adapter", default=None)
    p.add_argument("--precision", default="int8", choices=("int8", "int4", "fp32"))
    p.add_argument("--full-logits", action="store_true",
                   help="keep logits for every position (perplexity), not only the last")
    p.add_argument("--logits-window", type=int, default=0,
                   help="logits for the last N positions (verifying speculative drafts)")
    args = p.parse_args(argv)
    from slmchat.engine.offline import ensure_offline

    ensure_offline()
    out = Path(args.out)
    try:
        with tempfile.TemporaryDirectory(prefix="slmchat-onnx-") as work:
            prep = Path(work) / "hf"
            prepare(Path(args.source), prep, Path(args.adapter) if args.adapter else None)
            print("slmchat: building", flush=True)
            build(prep, out, Path(work) / "cache", args.precision, prune=not args.full_logits,
                  window=0 if args.full_logits else args.logits_window)
            if args.precision == "int8":
                from slmchat.engine.model import onnx_requant

                print("slmchat: re-quantizing blocks", flush=True)
                stats = onnx_requant.apply(out, prep)
                print(f"slmchat: requant {json.dumps(stats)}", flush=True)
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
