"""The ``slmchat`` command. Subcommands live in ``slmchat/commands/<name>.py``.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func`` to a callable ``(args) -> int``. Errors that are the user's (bad paths, bad
values, broken checkpoints) are ``SlmChatError``s: one line on stderr and exit 2.
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from slmchat import __version__
from slmchat.errors import SlmChatError, first_line

# Order = order in --help. "chat" is the default when no command is given.
COMMANDS = (
    "chat", "generate", "models", "finetune", "quantize", "export", "eval", "bench", "serve",
    "web", "remote", "doctor", "cache", "mcp",
    "export-chats",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse's default prints the whole usage block; keep it to one clear line.
        self.exit(2, f"slmchat: error: {message} (see slmchat {self.prog.split()[-1]} --help)\n"
                  if " " in self.prog else f"slmchat: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="slmchat",
        description="Private, offline chat, fine-tuning and quantization for small language models.",
    )
    parser.add_argument("--version", action="version", version=f"slmchat {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"slmchat.commands.{name.replace('-', '_')}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from slmchat.engine.offline import ensure_offline, quiet_libraries

    ensure_offline()  # before anything imports torch or transformers
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    known = {a for a in argv if not a.startswith("-")}
    if not known.intersection(COMMANDS) and not {"-h", "--help", "--version"} & set(argv):
        argv = [*(a for a in argv if a == "--debug"), "chat",
                *(a for a in argv if a != "--debug")]
    args = parser.parse_args(argv)
    if not args.debug:
        quiet_libraries()
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SlmChatError as exc:
        if args.debug:
            raise
        print(f"slmchat: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("slmchat: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an unexpected failure still gets one line, not a traceback
        if args.debug:
            raise
        first = first_line(exc, default="")
        print(f"slmchat: error: {type(exc).__name__}: {first} (rerun with --debug for details)",
              file=sys.stderr)
        return 1
