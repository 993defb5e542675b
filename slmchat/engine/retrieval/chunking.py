"""Cutting a file's blocks into chunks along headings and paragraphs.

A chunk never crosses a heading (or a PDF page): it is whole paragraphs of one section,
up to ``max_chars``. A paragraph longer than that is cut between lines (a very long
line between words), so every chunk keeps an exact line range. Each chunk carries the
path of headings above it ("Options > --keep"), which is indexed with it: the words of a
section title often name what a question asks about.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from slmchat.engine.retrieval.readers import Block

DEFAULT_MAX_CHARS = 1000


@dataclass(frozen=True)
class Chunk:
    text: str
    start_line: int
    end_line: int
    heading: str = ""  # "Title > Section > Subsection"
    page: int | None = None


def _split_long(block: Block, max_chars: int) -> Iterable[Block]:
    """Pieces of one paragraph, each at most ``max_chars`` where the lines allow."""
    lines = block.text.split("\n")
    buf: list[str] = []
    size = 0
    first = block.start_line
    for offset, line in enumerate(lines):
        lineno = min(block.start_line + offset, block.end_line)
        if len(line) > max_chars:  # one huge line: cut between words, same line number
            if buf:
                yield Block("\n".join(buf), first, lineno - 1 if lineno > first else first,
                            page=block.page)
                buf, size = [], 0
            for piece in _split_words(line, max_chars):
                yield Block(piece, lineno, lineno, page=block.page)
            first = lineno + 1
            continue
        if buf and size + len(line) + 1 > max_chars:
            yield Block("\n".join(buf), first, max(first, lineno - 1), page=block.page)
            buf, size, first = [], 0, lineno
        if not buf:
            first = lineno
        buf.append(line)
        size += len(line) + 1
    if buf:
        yield Block("\n".join(buf), first, max(first, block.end_line), page=block.page)


def _split_words(line: str, max_chars: int) -> Iterable[str]:
    words = re.split(r"(\s+)", line)
    buf = ""
    for w in words:
        if buf and len(buf) + len(w) > max_chars:
            yield buf.strip()
            buf = ""
        while len(w) > max_chars:  # no spaces at all (minified code, base64)
            yield w[:max_chars]
            w = w[max_chars:]
        buf += w
    if buf.strip():
        yield buf.strip()


def chunk_blocks(blocks: Sequence[Block], max_chars: int = DEFAULT_MAX_CHARS) -> list[Chunk]:
    """Group paragraphs into chunks of at most ``max_chars`` within each section."""
    chunks: list[Chunk] = []
    stack: list[tuple[int, str]] = []  # (level, title) of the headings above
    parts: list[Block] = []

    def heading_path() -> str:
        return " > ".join(title for _, title in stack)

    def flush() -> None:
        if parts:
            chunks.append(Chunk("\n\n".join(p.text for p in parts), parts[0].start_line,
                                parts[-1].end_line, heading_path(), parts[0].page))
            parts.clear()

    for block in blocks:
        if block.heading:
            flush()
            while stack and stack[-1][0] >= block.heading:
                stack.pop()
            stack.append((block.heading, block.text[:120]))
            continue
        if parts and parts[-1].page != block.page:
            flush()
        pieces = [block] if len(block.text) <= max_chars else list(_split_long(block, max_chars))
        for piece in pieces:
            size = sum(len(p.text) + 2 for p in parts)
            if parts and size + len(piece.text) > max_chars:
                flush()
            parts.append(piece)
    flush()
    return chunks
