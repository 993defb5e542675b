"""``slmchat eval MODEL FILE``: perplexity of a model on a text file.

The last line is machine-readable: ``perplexity=X tokens=N``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from slmchat.commands.common import add_model_args, spec_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="perplexity of MODEL on a text FILE",
                       description="Sliding-window perplexity of MODEL on a UTF-8 text FILE.")
    p.add_argument("model_path", metavar="MODEL", help="'default', a folder or a .gguf file")
    p.add_argument("file", metavar="FILE", help="UTF-8 text file")
    add_eval_args(p)
    add_model_args(p)
    p.set_defaults(func=run)


def add_eval_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("evaluation")
    g.add_argument("--window", type=int, default=512, help="tokens per window (default 512)")
    g.add_argument("--stride", type=int, default=None, help="window step (default window/2)")
    g.add_argument("--max-tokens", type=int, default=None,
                   help="evaluate only the first N tokens of the file")


def run(args: argparse.Namespace) -> int:
    from slmchat.engine.devices import configure_threads
    from slmchat.engine.runtimes import load
    from slmchat.engine.tools.perplexity import evaluate, read_text

    text = read_text(Path(args.file))  # bad file: fail before the model load
    args.model = args.model_path
    spec = spec_from_args(args)
    configure_threads()
    lm = load(spec, measure=True)
    print(f"model {lm.info.label} params={lm.info.n_params} load_s={lm.info.load_time_s:.2f}",
          file=sys.stderr)
    result = evaluate(lm, text, window=args.window, stride=args.stride, max_tokens=args.max_tokens)
    print(f"eval_s={result.seconds:.2f} tok_s={result.tokens / max(result.seconds, 1e-9):.1f}",
          file=sys.stderr)
    print(result.line)
    return 0
