"""Reading local files into blocks of text that keep their line numbers.

A block is a heading or a paragraph, with the (1-based, inclusive) line range it came
from in the file, so a citation can open the passage. Plain text, Markdown and source
code are split on blank lines; HTML on block elements (line numbers of the HTML source);
PDF page by page with pypdf (line numbers of the extracted text, and the page).

Files that cannot be read as text raise ``Unreadable`` with a reason the index lists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

MAX_FILE_BYTES = 64 << 20  # one file; a bigger "document" is almost surely data, not prose

MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".rst", ".txt", ".text", ""})
HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
PDF_SUFFIXES = frozenset({".pdf"})
# Known binary formats: listed as skipped without reading them.
BINARY_SUFFIXES = frozenset({
    ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".ico", ".webp", ".tif", ".tiff", ".svgz",
    ".zip", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".7z", ".rar", ".tar", ".whl", ".jar",
    ".so", ".dll", ".dylib", ".exe", ".o", ".a", ".pyc", ".pyo", ".class", ".bin",
    ".safetensors", ".gguf", ".pt", ".pth", ".ckpt", ".onnx", ".npy", ".npz", ".pkl",
    ".sqlite", ".db", ".mp3", ".mp4", ".wav", ".flac", ".ogg", ".mkv", ".avi", ".mov",
    ".woff", ".woff2", ".ttf", ".otf", ".doc", ".docx", ".xls", ".xlsx", ".ppt", ".pptx",
    ".odt", ".ods", ".epub",
})


class Unreadable(Exception):
    """The file is not indexable text; ``str(exc)`` is the reason shown to the user."""


@dataclass(frozen=True)
class Block:
    text: str
    start_line: int
    end_line: int
    heading: int = 0  # 0: a paragraph; 1..6: a heading of that level
    page: int | None = None  # PDFs: 1-based page number


def read_blocks(path: Path) -> tuple[str, list[Block]]:
    """(kind, blocks) for ``path``. Raises ``Unreadable`` with a reason."""
    suffix = path.suffix.lower()
    if suffix in BINARY_SUFFIXES:
        raise Unreadable(f"binary file type ({suffix})")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise Unreadable(f"cannot read: {exc.strerror or exc}") from exc
    if size > MAX_FILE_BYTES:
        raise Unreadable(f"too large ({size / 2**20:.0f} MiB; the limit is "
                         f"{MAX_FILE_BYTES >> 20} MiB)")
    if suffix in PDF_SUFFIXES:
        return "pdf", pdf_blocks(path)
    raw = _read_bytes(path)
    text = decode_text(raw)
    if suffix in HTML_SUFFIXES:
        return "html", html_blocks(text)
    kind = "text" if suffix in MARKDOWN_SUFFIXES else "source"
    return kind, text_blocks(text)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise Unreadable(f"cannot read: {exc.strerror or exc}") from exc


def decode_text(raw: bytes) -> str:
    """UTF-8 (a BOM dropped); NUL bytes mean binary. Raises ``Unreadable``."""
    if b"\x00" in raw[:65536]:
        raise Unreadable("binary (contains NUL bytes)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Unreadable(f"not UTF-8 text (bad byte at offset {exc.start})") from exc


# --- plain text, Markdown, source code ------------------------------------------------

_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_UNDERLINE = re.compile(r"^(=+|-+|~+|\^+)\s*$")
# Man pages rendered as text: section names in capitals at the left margin.
_CAPS_HEADING = re.compile(r"^[A-Z][A-Z0-9 ,&/()-]{2,60}$")


# PDF text has no blank lines; numbered section titles ("2.1. Directory layout") mark it.
_NUMBERED_HEADING = re.compile(r"^(\d{1,2}(?:\.\d{1,2}){0,3})\.?\s+[A-Z][^.!?:;]{1,70}$")


def text_blocks(text: str, numbered_headings: bool = False) -> list[Block]:
    """Blank-line paragraphs; Markdown (#), underlined (RST) and capitalised (man page)
    section lines become headings, and with ``numbered_headings`` (PDF) numbered
    section titles, even inside a paragraph."""
    lines = text.splitlines()
    blocks: list[Block] = []
    para: list[str] = []
    start = 0

    def flush(end: int) -> None:
        if para and any(p.strip() for p in para):
            blocks.append(Block("\n".join(para).strip("\n"), start, end))
        para.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        lineno = i + 1
        md = _MD_HEADING.match(line)
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        numbered = _NUMBERED_HEADING.match(line.strip()) if numbered_headings else None
        if md and not para:
            blocks.append(Block(md.group(2), lineno, lineno, heading=len(md.group(1))))
        elif numbered:
            flush(lineno - 1)
            level = min(6, numbered.group(1).count(".") + 1)
            blocks.append(Block(line.strip(), lineno, lineno, heading=level))
        elif (line.strip() and not para and _UNDERLINE.match(nxt)
              and len(nxt.strip()) >= max(3, len(line.strip()) // 2)):
            level = 1 if nxt.strip()[0] == "=" else 2
            blocks.append(Block(line.strip(), lineno, lineno + 1, heading=level))
            i += 1
        elif not para and _CAPS_HEADING.match(line) and nxt.strip() != line.strip():
            blocks.append(Block(line.strip(), lineno, lineno, heading=2))
        elif not line.strip():
            flush(lineno - 1)
        else:
            if not para:
                start = lineno
            para.append(line)
        i += 1
    flush(len(lines))
    return blocks


# --- HTML -----------------------------------------------------------------------------

_BLOCK_TAGS = frozenset({
    "p", "div", "li", "ul", "ol", "dl", "dt", "dd", "pre", "blockquote", "table", "tr",
    "section", "article", "header", "footer", "nav", "aside", "main", "br", "hr",
    "h1", "h2", "h3", "h4", "h5", "h6", "title", "td", "th", "figcaption", "form",
})
_SKIP_TAGS = frozenset({"script", "style", "noscript", "template", "svg"})


class _HtmlText(HTMLParser):
    """Text per block element, with the source lines it spans (stdlib parser: tolerant of
    broken markup, no network access, no entity surprises)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self._buf: list[str] = []
        self._start = 1
        self._heading = 0
        self._skip = 0
        self._pre = 0
        self._seen_text = False

    def _flush(self) -> None:
        raw = "".join(self._buf)
        text = raw
        if not self._pre:
            text = re.sub(r"[ \t\r\f\v]*\n[ \t\r\f\v\n]*", "\n", re.sub(r"[ \t]+", " ", text))
            text = " ".join(text.split()) if self._heading else text
        text = text.strip("\n").strip()
        here = self.getpos()[0]
        if text and self._seen_text:
            end = min(here, self._start + raw.strip().count("\n"))
            self.blocks.append(Block(text, self._start, max(end, self._start),
                                     heading=self._heading))
        self._buf = []
        self._start = here
        self._seen_text = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
            return
        if tag in _BLOCK_TAGS:
            self._flush()
            if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
                self._heading = int(tag[1])
            elif tag == "title":
                self._heading = 1
            if tag == "pre":
                self._pre += 1
        if tag == "li":
            self._buf.append("- ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
            return
        if tag in _BLOCK_TAGS:
            self._flush()
            if tag in ("h1", "h2", "h3", "h4", "h5", "h6", "title"):
                self._heading = 0
            if tag == "pre":
                self._pre = max(0, self._pre - 1)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if not self._seen_text and data.strip():
            # The block starts at its first visible character, not at the tag.
            lead = data[: len(data) - len(data.lstrip())]
            self._start = self.getpos()[0] + lead.count("\n")
            self._seen_text = True
        self._buf.append(data)

    def close(self) -> None:
        super().close()
        self._flush()


def html_blocks(text: str) -> list[Block]:
    parser = _HtmlText()
    try:
        parser.feed(text)
        parser.close()
    except Exception as exc:  # the stdlib parser is tolerant; anything left is not HTML
        raise Unreadable(f"cannot parse HTML ({type(exc).__name__})") from exc
    return parser.blocks


# --- PDF ------------------------------------------------------------------------------

def pdf_blocks(path: Path) -> list[Block]:
    """Paragraphs of each page's extracted text; line numbers count the extracted lines
    of the whole document, and each block carries its page."""
    try:
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError
    except ImportError as exc:  # pragma: no cover - pypdf is a pinned dependency
        raise Unreadable("PDF support needs pypdf") from exc
    import logging

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # malformed-file chatter
    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            raise Unreadable("encrypted PDF")
        pages = [page.extract_text() or "" for page in reader.pages]
    except Unreadable:
        raise
    except (PdfReadError, OSError, ValueError, KeyError, TypeError) as exc:
        raise Unreadable(f"cannot read PDF ({type(exc).__name__})") from exc
    except Exception as exc:  # pypdf raises many kinds on damaged files
        raise Unreadable(f"cannot read PDF ({type(exc).__name__})") from exc
    blocks: list[Block] = []
    offset = 0
    for number, page_text in enumerate(pages, 1):
        for b in text_blocks(page_text, numbered_headings=True):
            blocks.append(Block(b.text, b.start_line + offset, b.end_line + offset, b.heading,
                                page=number))
        offset += len(page_text.splitlines())
    if not blocks:
        raise Unreadable("PDF has no extractable text (scanned images?)")
    return blocks
