"""``slmchat cache list|clear``: the converted copies in the cache folder.

``list`` shows each copy with its source, size, last use and state; ``clear`` removes
copies (all, or those named, or those unused for ``--older-than DAYS``), skipping any a
running slmchat uses. Conversations, settings, runs and models you made live in other
folders and are never touched. Removed copies are rebuilt when next needed.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from slmchat.errors import InvalidParameterError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="list or clear converted copies of models (rebuilt when needed)",
                       description="List or clear the converted copies of models in the cache "
                                   "folder. Conversations, settings, runs and your own models "
                                   "are never touched.")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    ls = actions.add_parser("list", help="list converted copies (the default)")
    ls.add_argument("--json", action="store_true", help="print a JSON list")
    clear = actions.add_parser("clear", help="remove converted copies",
                               description="Remove converted copies; a copy a running slmchat "
                                           "uses is skipped.")
    clear.add_argument("names", nargs="*", metavar="NAME",
                       help="only these copies (NAME or KIND/NAME as `cache list` shows them)")
    clear.add_argument("--older-than", type=float, default=None, metavar="DAYS",
                       help="only copies not used for DAYS days")
    clear.add_argument("--dry-run", action="store_true", help="say what would be removed")
    p.set_defaults(func=run, action="list", json=False)


def run(args: argparse.Namespace) -> int:
    from slmchat.engine.tools.cache import cache_root, list_copies

    copies = list_copies()
    if args.action == "clear":
        return _clear(args, copies)
    if args.json:
        print(json.dumps([{**c.as_dict(), "adapter": _adapter(c)} for c in copies], indent=2))
        return 0
    print(f"cache folder: {cache_root()}")
    if not copies:
        print("(no converted copies)")
        return 0
    _table(copies)
    return 0


def _age(then: float) -> str:
    from slmchat.fmt import format_duration

    return "never" if not then else f"{format_duration(max(0.0, time.time() - then))} ago"


def _adapter(copy: Any) -> str | None:
    from slmchat.engine.tools.cache import copy_adapter

    return copy_adapter(copy)


def _source(copy: Any) -> str:
    """What a copy was converted from: a fine-tuned model's copy names its adapter (the
    tuned model), then the base, not the base alone."""
    adapter = _adapter(copy)
    if adapter:
        return f"{adapter} (LoRA on {copy.source or '?'})"
    return copy.source or "-"


def _table(copies: list) -> None:
    from slmchat.fmt import human_bytes

    rows = [("COPY", "SIZE", "LAST USE", "STATE", "SOURCE")]
    for c in copies:
        state = c.problem or "ok"
        if c.in_use:
            state += ", in use"
        rows.append((c.label, human_bytes(c.size_bytes), _age(c.last_used), state, _source(c)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join([*(v.ljust(w) for v, w in zip(row[:-1], widths, strict=True)), row[-1]]))
    total = sum(c.size_bytes for c in copies)
    print(f"{len(copies)} cop{'y' if len(copies) == 1 else 'ies'}, {human_bytes(total)}")


def _clear(args: argparse.Namespace, copies: list) -> int:
    from slmchat.engine.tools.cache import clear, select
    from slmchat.fmt import human_bytes

    if args.older_than is not None and args.older_than < 0:
        raise InvalidParameterError("--older-than must be 0 or more days")
    known = {k for c in copies for k in (c.name, c.label, str(c.path))}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        raise InvalidParameterError(
            f"no converted copy named {', '.join(unknown)} (see slmchat cache list)")
    result = clear(select(copies, args.names, args.older_than), dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for c in result.removed:
        print(f"{verb} {c.label} ({human_bytes(c.size_bytes)})")
    for c, why in result.skipped:
        print(f"skipped {c.label}: {why}")
    print(f"{verb} {len(result.removed)} cop{'y' if len(result.removed) == 1 else 'ies'}, "
          f"{human_bytes(result.freed_bytes)}"
          + (f"; skipped {len(result.skipped)}" if result.skipped else ""))
    return 0
