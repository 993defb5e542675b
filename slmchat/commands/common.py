"""Flags shared by several commands and their conversion to engine objects."""

from __future__ import annotations

import argparse
import contextlib

from slmchat.engine.model.spec import DTYPES, QUANTS, RUNTIMES, ModelSpec
from slmchat.errors import SlmChatError


def add_model_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--model", "-m", default=None,
                   help="'default', a checkpoint folder, a .gguf file, an adapter folder, or "
                        "a name `slmchat models` prints (tidewater:q4, ollama:tidewater:q4, ...)")
    g.add_argument("--adapter", default=None, help="LoRA adapter folder to apply on --model")
    g.add_argument("--dtype", choices=DTYPES, default=None)
    g.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N, mps")
    g.add_argument("--quant", choices=QUANTS, default=None,
                   help="none, 8bit / 4bit (bitsandbytes; slow on CPU), cpu-int8")
    g.add_argument("--bnb-4bit-type", choices=("nf4", "fp4"), default="nf4")
    g.add_argument("--no-double-quant", action="store_true",
                   help="disable bitsandbytes 4-bit double quantization")
    g.add_argument("--compute-dtype", choices=("bf16", "fp16", "fp32"), default="bf16",
                   help="compute dtype for 4-bit layers")
    g.add_argument("--runner", choices=("auto", "hf"), default="auto",
                   help="decode path: auto (lean Llama path where it applies) or hf (plain "
                        "transformers forward, the reference)")
    g.add_argument("--runtime", choices=RUNTIMES, default=None,
                   help="chat runtime: auto (llama.cpp for GGUF files and store models, ONNX "
                        "Runtime int8 for checkpoint folders on the CPU, else transformers), "
                        "llamacpp, onnx or transformers")
    g.add_argument("--allow-pickle", action="store_true",
                   help="allow .bin/.pt weights (pickle can run code; loaded weights_only)")


def spec_from_args(args: argparse.Namespace) -> ModelSpec:
    """Flags override the settings file, which overrides built-in defaults."""
    from slmchat.config import load_settings
    from slmchat.engine.model.discovery import resolve_name

    settings, _ = load_settings()
    ms = settings.model
    return ModelSpec(
        path=resolve_name(args.model or ms.path, settings),
        dtype=args.dtype or ms.dtype,
        device=args.device or ms.device,
        quant=args.quant or ms.quant,
        bnb_4bit_quant_type=args.bnb_4bit_type,
        bnb_4bit_double_quant=not args.no_double_quant,
        bnb_4bit_compute_dtype=args.compute_dtype,
        adapter=args.adapter if args.adapter is not None else ms.adapter,
        allow_pickle=args.allow_pickle,
        runner=getattr(args, "runner", "auto"),
        runtime=getattr(args, "runtime", None) or ms.runtime,
    )


def model_line(args: argparse.Namespace, spec: ModelSpec, name: str) -> str | None:
    """One stderr line naming the model when it is not the embedded default, and why
    (a flag, the environment or settings.toml), so a changed default never goes unseen."""
    if spec.path in ("default", "") and not spec.adapter:
        return None
    import os

    if args.model or args.adapter:
        source = "--model/--adapter"
    elif os.environ.get("SLMCHAT_MODEL__PATH") or os.environ.get("SLMCHAT_MODEL__ADAPTER"):
        source = "SLMCHAT_MODEL__* in the environment"
    else:
        from slmchat.config import settings_path

        source = f"[model] in {settings_path()}"
    adapter = f" + adapter {spec.adapter}" if spec.adapter else ""
    hint = "" if source.startswith("--") else "; --model default for the embedded one"
    return f"slmchat: model: {name} ({spec.path}{adapter}; from {source}{hint})"


def prepare_default_model(spec: ModelSpec) -> None:
    """On the first start, convert the default model here, with a bar in the terminal,
    before the app opens (the app would otherwise sit on "loading" for ~40 s)."""
    if spec.path not in ("default", ""):
        return
    from slmchat.commands.progress import TerminalBar
    from slmchat.engine.model import default

    if not default.is_converted():
        default.gguf_path()  # not installed: one clear line, before any bar is drawn
        with TerminalBar("converting the default model (once)") as bar:
            default.ensure_default_model(progress=bar)
    # Then its int8 copy for the onnx chat runtime (10-20 s, once), with the same bar.
    from slmchat.engine.model import onnx
    from slmchat.engine.runtimes import onnx as onnx_runtime

    try:
        pending = onnx_runtime.pending_copy(spec)
    except SlmChatError:
        return  # the load reports it, in its own words
    if pending is not None:
        # A failed build: the bar says so, and the load falls back to transformers.
        with contextlib.suppress(onnx.OnnxUnavailable), \
                TerminalBar("building the ONNX int8 copy (once)") as bar:
            onnx.ensure_copy(*pending, progress=bar)
