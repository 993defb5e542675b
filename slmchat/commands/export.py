"""``slmchat export MODEL --out DIR [--merge-adapter] [--gguf FILE] [--gguf-type TYPE]
[--ollama NAME] [--lm-studio [PUBLISHER/REPO]] [--modelfile] [--gguf-lora FILE]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from slmchat.commands.common import add_model_args, spec_from_args
from slmchat.engine.tools.gguf_writer import GGUF_TYPES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="merge an adapter, save safetensors and/or a GGUF file",
                       description="Export MODEL (optionally merging its LoRA adapter) as a "
                                   "safetensors folder and/or a GGUF file for llama.cpp.")
    p.add_argument("model_path", metavar="MODEL",
                   help="'default', a checkpoint folder or a LoRA adapter folder")
    p.add_argument("--out", default=None, help="output folder (safetensors + tokenizer + card)")
    p.add_argument("--merge-adapter", action="store_true",
                   help="merge the LoRA adapter into the base weights")
    p.add_argument("--gguf", default=None,
                   help="also write this .gguf file (Llama, Qwen2, Gemma, Gemma 2, Phi-3 models)")
    p.add_argument("--gguf-type", choices=GGUF_TYPES, default=None,
                   help="f16 (default for --gguf), q8_0, or llama.cpp's q6_k, q5_k_m, q4_k_m "
                        "(default for --ollama/--lm-studio: what they run most; needs "
                        "llama-cpp-python)")
    p.add_argument("--ollama", metavar="NAME", default=None,
                   help="put the GGUF into Ollama's model store as NAME[:TAG] (with its "
                        "chat template as TEMPLATE, stop parameters and SYSTEM), so "
                        "`ollama run NAME` finds it")
    p.add_argument("--lm-studio", metavar="PUBLISHER/REPO", nargs="?", const="",
                   default=None, help="put the GGUF into LM Studio's models folder "
                                      "(default slmchat/MODEL-NAME)")
    p.add_argument("--gguf-lora", metavar="FILE", default=None,
                   help="write the LoRA adapter itself as a GGUF adapter for llama.cpp "
                        "(--lora FILE) or Ollama (ADAPTER), for use with the base's GGUF")
    p.add_argument("--modelfile", action="store_true",
                   help="write FILE.Modelfile beside --gguf FILE for `ollama create`")
    p.add_argument("--no-verify", action="store_true",
                   help="skip loading the GGUF back and comparing logits")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_model_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from slmchat.engine.devices import configure_threads
    from slmchat.engine.tools.export import StoreTargets, export_model
    from slmchat.fmt import human_bytes

    args.model = args.model_path
    spec = spec_from_args(args)
    stores = StoreTargets(ollama=args.ollama, lm_studio=args.lm_studio)
    gguf_type = args.gguf_type or ("q4_k_m" if stores else "f16")
    configure_threads()

    from slmchat.commands.progress import TerminalBar

    # A bar redrawn in place on a terminal; in a pipe or a log, one line per stage.
    with TerminalBar("export") as progress:
        result = export_model(
            spec, out=Path(args.out) if args.out else None, merge_adapter=args.merge_adapter,
            gguf=Path(args.gguf) if args.gguf else None, gguf_type=gguf_type,
            verify=not args.no_verify, overwrite=args.overwrite, progress=progress,
            stores=stores, modelfile=args.modelfile,
            gguf_lora=Path(args.gguf_lora) if args.gguf_lora else None,
        )
    if result.out:
        merged = " (adapter merged)" if result.merged else ""
        print(f"wrote {result.out}{merged} {human_bytes(result.out_bytes)}")
    if result.gguf:
        print(f"wrote {result.gguf} ({gguf_type}) {human_bytes(result.gguf_bytes)}")
    if result.gguf_lora:
        print(f"wrote {result.gguf_lora} (GGUF LoRA adapter) "
              f"{human_bytes(result.gguf_lora.stat().st_size)}")
    if result.modelfile:
        print(f"wrote {result.modelfile} (ollama create NAME -f {result.modelfile.name})")
    if result.ollama:
        print(f"Ollama: {args.ollama} ({gguf_type}) in {result.ollama}")
    if result.lm_studio:
        print(f"LM Studio: {result.lm_studio}")
    if result.check:
        print(result.check.line)
    return 0
