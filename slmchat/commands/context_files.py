"""``--context PATH`` for ``slmchat generate``: index local files and answer from them.

Kept apart from generate.py so that command's own code stays short: ``add_context_args``
adds the flag, ``augment`` indexes and fits passages into the prompt, ``print_sources``
writes the citations after the answer (one ``file:lines`` a line).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, TextIO


def add_context_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("chat with local files")
    g.add_argument("--context", action="append", default=[], metavar="PATH",
                   help="answer from this file or folder (.txt, .md, source, .pdf, .html; "
                        "repeatable); the sources used are printed after the answer")
    g.add_argument("--context-tokens", type=_positive_int, default=None, metavar="N",
                   help="at most N prompt tokens of passages (default 768)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


class _Progress:
    """Indexing progress on stderr: redrawn in place on a terminal, silent otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())

    def __call__(self, p: Any) -> None:
        if self.tty and p.files_total:
            pct = 100 * p.bytes_done / max(1, p.bytes_total)
            self.stream.write(f"\r\033[Kindexing {p.files_done}/{p.files_total} files "
                              f"({pct:.0f}%)")
            self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


def index_paths(paths: Sequence[str], stream: TextIO | None = None) -> tuple[Any, list[str]]:
    """(index, resolved roots); reports skipped files on ``stream`` (stderr)."""
    from slmchat.engine.retrieval.index import DocumentIndex, resolve_roots

    roots = resolve_roots(paths)  # a missing path is a one-line error before the model loads
    index = DocumentIndex.open_default()
    stream = stream or sys.stderr  # looked up now: tests and callers swap sys.stderr
    bar = _Progress(stream)
    report = index.index(roots, progress=bar)
    bar.done()
    for s in report.skipped[:10]:
        print(f"slmchat: skipped {s.path}: {s.reason}", file=stream)
    if len(report.skipped) > 10:
        print(f"slmchat: ... and {len(report.skipped) - 10} more skipped files", file=stream)
    if report.chunks == 0:
        print("slmchat: warning: no readable text under the --context paths", file=stream)
    return index, roots


def augment(engine: Any, index: Any, roots: Sequence[str], messages: list[Any], params: Any,
            max_context_tokens: int | None = None) -> Any:
    """The retrieval result (``Augmented``): messages with passages, and the sources."""
    from slmchat.engine.retrieval.context import DEFAULT_MAX_CONTEXT_TOKENS, retrieve

    return retrieve(
        index, roots, messages, lambda msgs: engine.preview_prompt(msgs, params),
        params.max_new_tokens, max_context_tokens=max_context_tokens or DEFAULT_MAX_CONTEXT_TOKENS)


def print_sources(augmented: Any, stream: TextIO | None = None) -> None:
    if augmented is None:
        return
    stream = stream or sys.stdout
    if not augmented.sources:
        print("\nSources: none (no passage matched the question)", file=stream)
        return
    print("\nSources:", file=stream)
    for hit in augmented.sources:
        print(hit.citation, file=stream)
