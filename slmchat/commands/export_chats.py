"""``slmchat export-chats``: curated conversations as chat JSONL for ``slmchat finetune``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-chats", help="export marked (or chosen) conversations as training JSONL",
        description="Write conversations as chat JSONL ({'messages': [...]} rows) that "
                    "`slmchat finetune` reads. Default: every conversation with a reply "
                    "marked good (or edited) in the app, learning only those replies.")
    p.add_argument("-c", "--conversation", type=int, action="append", default=None,
                   metavar="ID", help="export this conversation (repeatable): every complete "
                                      "reply not marked bad is learned")
    p.add_argument("-o", "--out", type=Path, default=None,
                   help="output .jsonl (default: DATA_DIR/exports/chats-DATE.jsonl)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from slmchat.engine.store.curation import export_training
    from slmchat.engine.store.store import Store
    from slmchat.paths import data_dir

    out = args.out or data_dir() / "exports" / f"chats-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
    store = Store.open_default()
    try:
        report = export_training(store, out, args.conversation)
    finally:
        store.close()
    print(f"wrote {report.rows} conversation(s), {report.trained_replies} repl(ies) to learn "
          f"and {report.context_replies} kept as context: {report.path}")
    print(f"fine-tune on them: slmchat finetune {report.path}")
    return 0
