"""A small fixture corpus: Markdown, source code, HTML, a PDF, and files to skip."""

from __future__ import annotations

from pathlib import Path

NOTES_MD = """# Garden notes

Notes about the allotment, kept since spring.

## Tomatoes

Tomatoes need staking once they reach knee height.
Water them at the base in the morning, never on the leaves.

## Compost

The compost heap is turned every three weeks with a fork.
Grass clippings go in thin layers so the heap does not turn slimy.

## Bees

The beehive stands behind the shed, facing south-east.
"""

CODE_PY = '''"""Billing helpers."""


def invoice_total(lines):
    """Sum the line amounts and add the 21 percent value-added tax."""
    return round(sum(lines) * 1.21, 2)


def late_fee(days):
    """A late payment costs 4 euros per week, started weeks counted."""
    return 4 * ((days + 6) // 7)
'''

PAGE_HTML = """<!doctype html>
<html><head><title>Bicycle manual</title>
<style>body { font-family: serif }</style>
<script>console.log("not text")</script></head>
<body>
<h1>Bicycle manual</h1>
<p>Check the tyre pressure every week;
road tyres want six bar.</p>
<h2>Chain</h2>
<p>Oil the chain after riding in the rain and wipe off the excess oil.</p>
</body></html>
"""

PDF_LINES = [
    "1. Warranty",
    "The kettle is covered for two years from the date of purchase.",
    "Keep the receipt as proof of purchase.",
    "2. Descaling",
    "Descale the kettle monthly with citric acid in hard water areas.",
]


def minimal_pdf(lines: list[str]) -> bytes:
    """A one-page PDF with ``lines`` of Helvetica text (no tool needed to make it)."""
    text = "BT /F1 12 Tf 14 TL 72 720 Td " + " ".join(
        f"({line.replace('(', '[').replace(')', ']')}) Tj T*" for line in lines) + " ET"
    stream = text.encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)


def make_corpus(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "notes.md").write_text(NOTES_MD)
    (root / "billing.py").write_text(CODE_PY)
    (root / "manual.html").write_text(PAGE_HTML)
    (root / "kettle.pdf").write_bytes(minimal_pdf(PDF_LINES))
    (root / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (root / "data.dat").write_bytes(b"\x00\x01\x02binary" * 10)
    (root / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (root / ".hidden.md").write_text("# secret\n\nnot indexed\n")
    return root
