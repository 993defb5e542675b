"""``slmchat export-chats``: curated conversations as chat JSONL for ``slmchat finetune``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any


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
                   help="output .jsonl (default: DATA_DIR/exports/chats-DATE.jsonl, or "
                        "pairs-DATE.jsonl with --pairs)")
    p.add_argument("--pairs", action="store_true",
                   help="write preference pairs for `slmchat finetune --method dpo`: each "
                        "edited reply against the model's own text, and each reply marked "
                        "good against another answer to the same message marked bad")
    p.add_argument("--no-passages", action="store_true",
                   help="export questions answered from attached files (/attach) as typed, "
                        "without the retrieved passages the model was given (default: with "
                        "them, as the model saw the prompt)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from slmchat.engine.store.curation import export_training
    from slmchat.engine.store.store import Store
    from slmchat.paths import data_dir

    kind = "pairs" if args.pairs else "chats"
    out = args.out or data_dir() / "exports" / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
    if args.pairs and args.conversation:
        from slmchat.errors import InvalidParameterError

        raise InvalidParameterError("--pairs reads every conversation's marks and edits; "
                                    "leave out --conversation")
    store = Store.open_default()
    index: list[Any] = []  # opened only if a reply did not record its passages' text

    def passages(retrieval: dict[str, Any], question: str) -> str | None:
        from slmchat.engine.retrieval.context import grounded_question
        from slmchat.engine.retrieval.index import DocumentIndex

        try:
            if not index:
                index.append(DocumentIndex.open_default())
            return grounded_question(index[0], retrieval, question)
        except Exception:  # no index, a damaged one: counted as not recovered
            return None

    try:
        if args.pairs:
            return _export_pairs(store, out, passages, not args.no_passages)
        report = export_training(store, out, args.conversation, passages=passages,
                                 with_passages=not args.no_passages)
    finally:
        store.close()
        for opened in index:
            opened.close()
    print(f"wrote {report.rows} conversation(s), {report.trained_replies} repl(ies) to learn "
          f"and {report.context_replies} kept as context: {report.path}")
    if report.grounded:
        print(f"{report.grounded} question(s) answered from attached files are exported with "
              "the passages the model was given (--no-passages leaves them out)")
    if report.ungrounded:
        print(f"warning: {report.ungrounded} question(s) were answered from attached files "
              "whose passages are no longer in the index: exported without them",
              file=sys.stderr)
    print(f"fine-tune on them: slmchat finetune {report.path}")
    return 0


def _export_pairs(store: Any, out: Path, passages: Any, with_passages: bool) -> int:
    from slmchat.engine.store.curation import export_pairs

    report = export_pairs(store, out, passages=passages, with_passages=with_passages)
    print(f"wrote {report.pairs} preference pair(s) from {report.conversations} "
          f"conversation(s) ({report.from_edits} edited repl(ies), {report.from_branches} "
          f"good/bad answer(s) to the same message): {report.path}")
    print(f"preference-tune on them: slmchat finetune {report.path} --method dpo")
    return 0
