"""``slmchat bench``: the generation benchmark (table + JSON)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from slmchat.bench import add_arguments

    p = sub.add_parser("bench", help="benchmark generation paths; prints a table, writes JSON")
    add_arguments(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from slmchat.bench import run

    return run(args)
