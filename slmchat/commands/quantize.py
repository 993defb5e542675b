"""``slmchat quantize MODEL --bits 8|4 [--method bnb|cpu-int8] --out DIR``.

Writes a quantized copy that reloads with ``load()`` (and, for bitsandbytes, in plain
transformers), and reports size and, with ``--eval-file``, perplexity before/after.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from slmchat.commands.common import add_model_args, spec_from_args
from slmchat.commands.eval import add_eval_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quantize", help="save an 8-bit or 4-bit copy of MODEL",
                       description="Quantize MODEL and save the copy to --out.")
    p.add_argument("model_path", metavar="MODEL", nargs="?", default="default",
                   help="'default' (the default) or a checkpoint folder")
    p.add_argument("--bits", type=int, choices=(8, 4), default=None,
                   help="8 or 4 (bnb needs it; the int8 methods are 8-bit)")
    p.add_argument("--method", choices=("bnb", "cpu-int8", "onnx-int8"), default="bnb",
                   help="onnx-int8: ONNX Runtime GenAI int8, the fast CPU chat runtime "
                        "(recommended on the CPU); bnb: bitsandbytes (GPU speed; slow on CPU); "
                        "cpu-int8: torch dynamic int8 (8-bit only)")
    p.add_argument("--out", required=True, help="output folder (written atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--eval-file", default=None,
                   help="text file: report perplexity before and after")
    add_eval_args(p)
    add_model_args(p)
    p.set_defaults(func=run)


def _ppl(spec, text: str, args: argparse.Namespace) -> str:  # type: ignore[no-untyped-def]
    from slmchat.engine.runtimes import load
    from slmchat.engine.tools.perplexity import evaluate

    return evaluate(load(spec, measure=True), text, window=args.window, stride=args.stride,
                    max_tokens=args.max_tokens).line


def run(args: argparse.Namespace) -> int:
    from slmchat.engine.devices import configure_threads
    from slmchat.engine.fsutil import check_target
    from slmchat.engine.tools.perplexity import read_text
    from slmchat.engine.tools.quantize import quantize_and_save
    from slmchat.errors import InvalidParameterError
    from slmchat.fmt import human_bytes

    if args.bits is None:
        if args.method == "bnb":
            raise InvalidParameterError("--method bnb needs --bits 8 or --bits 4")
        args.bits = 8
    if args.method in ("cpu-int8", "onnx-int8") and args.bits != 8:
        raise InvalidParameterError(f"{args.method} is 8-bit only (use --bits 8 or --method bnb)")
    out = Path(args.out)
    check_target(out.expanduser().resolve(), args.overwrite)
    text = read_text(Path(args.eval_file)) if args.eval_file else None
    args.model = args.model_path
    spec = spec_from_args(args).with_(quant="none")
    if args.method == "onnx-int8":
        from slmchat.engine.tools.quantize import onnx_source

        onnx_source(spec)  # an unsupported model: one line now, before any slow work
    configure_threads()
    cpu_method = args.method in ("cpu-int8", "onnx-int8")
    before = _ppl(spec.with_(device="cpu") if cpu_method else spec, text, args) if text else None

    from slmchat.commands.progress import TerminalBar

    # A bar redrawn in place on a terminal; in a pipe or a log, one line per stage.
    with TerminalBar("quantize") as progress:
        result = quantize_and_save(spec, out, method=args.method, bits=args.bits,
                                   overwrite=args.overwrite, progress=progress)
    print(f"wrote {result.out} ({result.method}, {result.bits}-bit) in {result.seconds:.1f} s")
    ratio = result.size_after / max(result.size_before, 1)
    print(f"size before={human_bytes(result.size_before)} after={human_bytes(result.size_after)} "
          f"ratio={ratio:.2f}")
    if text is not None:
        after = _ppl(spec.with_(path=str(result.out), device="cpu", adapter=None)
                     if cpu_method else spec.with_(path=str(result.out)), text, args)
        print(f"before: {before}")
        print(f"after: {after}")
    return 0
