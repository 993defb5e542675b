"""``slmchat web``: the chat app in a browser tab (textual-serve), loopback only."""

from __future__ import annotations

import argparse
import sys

from slmchat.commands.common import add_model_args
from slmchat.errors import InvalidParameterError

MODEL_FLAGS = ("model", "adapter", "dtype", "device", "quant", "runner")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("web", help="open the chat app in a browser (served on loopback)",
                       description="Serve the chat app to a browser at http://127.0.0.1:PORT. "
                                   "Each browser tab runs its own app. The page loads nothing "
                                   "from the internet, and only this machine can reach it.")
    add_model_args(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="loopback address to listen on (the app has no login, so other "
                        "machines are refused; use an SSH tunnel)")
    p.add_argument("--port", type=int, default=8001, help="TCP port (default 8001; 0 = any)")
    p.set_defaults(func=run)


def model_args(args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    for name in MODEL_FLAGS:
        value = getattr(args, name, None)
        if value is not None and not (name == "runner" and value == "auto"):
            out += [f"--{name}", str(value)]
    if getattr(args, "allow_pickle", False):
        out.append("--allow-pickle")
    return out


def run(args: argparse.Namespace) -> int:
    from slmchat.server.http_server import bind, is_loopback
    from slmchat.web.page import chat_command
    from slmchat.web.page import run as serve_web

    if not is_loopback(args.host):
        raise InvalidParameterError(
            f"--host {args.host}: slmchat web has no login, so it serves this machine only; "
            "reach it from elsewhere through an SSH tunnel (ssh -L 8001:127.0.0.1:8001 ...)")
    sock = bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host

    def started() -> None:
        print(f"slmchat web: open http://{shown}:{port} in a browser; Ctrl+C stops", flush=True)

    try:
        serve_web(chat_command(model_args(args)), shown, sock, on_started=started)
    finally:
        sock.close()
    print("slmchat web: stopped", file=sys.stderr, flush=True)
    return 0
