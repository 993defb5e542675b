"""Chunking, indexing (incremental, skipped files) and retrieval on a fixture corpus."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import pytest

from slmchat.engine.retrieval.chunking import chunk_blocks
from slmchat.engine.retrieval.index import DocumentIndex, fts_query
from slmchat.engine.retrieval.readers import Block, html_blocks, read_blocks, text_blocks
from tests.engine.retrieval.corpus import NOTES_MD, PAGE_HTML, make_corpus


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return make_corpus(tmp_path / "docs")


@pytest.fixture
def index(tmp_path: Path) -> DocumentIndex:
    idx = DocumentIndex(tmp_path / "retrieval.db")
    yield idx
    idx.close()


def _lines(text: str, start: int, end: int) -> str:
    return "\n".join(text.splitlines()[start - 1:end])


# --- reading and chunking ----------------------------------------------------------

def test_markdown_headings_and_paragraph_line_ranges() -> None:
    blocks = text_blocks(NOTES_MD)
    headings = [(b.text, b.heading) for b in blocks if b.heading]
    assert headings == [("Garden notes", 1), ("Tomatoes", 2), ("Compost", 2), ("Bees", 2)]
    for b in blocks:
        if not b.heading:  # every paragraph's line range holds exactly its text
            assert _lines(NOTES_MD, b.start_line, b.end_line).strip() == b.text


def test_chunks_follow_headings_and_keep_their_lines() -> None:
    chunks = chunk_blocks(text_blocks(NOTES_MD), max_chars=1000)
    by_heading = {c.heading: c for c in chunks}
    assert set(by_heading) == {"Garden notes", "Garden notes > Tomatoes",
                               "Garden notes > Compost", "Garden notes > Bees"}
    compost = by_heading["Garden notes > Compost"]
    assert "turned every three weeks" in compost.text and "staking" not in compost.text
    assert "turned every three weeks" in _lines(NOTES_MD, compost.start_line, compost.end_line)


def test_long_paragraphs_are_cut_between_lines_with_exact_ranges() -> None:
    text = "\n".join(f"line {i} " + "word " * 20 for i in range(1, 41))
    chunks = chunk_blocks(text_blocks(text), max_chars=300)
    assert len(chunks) > 5
    assert all(len(c.text) <= 300 for c in chunks)
    assert chunks[0].start_line == 1 and chunks[-1].end_line == 40
    for a, b in itertools.pairwise(chunks):
        assert b.start_line == a.end_line + 1  # no gap, no overlap
    for c in chunks:
        assert c.text == _lines(text, c.start_line, c.end_line)


def test_one_huge_line_is_cut_between_words() -> None:
    line = "alpha beta gamma delta " * 200
    chunks = chunk_blocks([Block(line, 7, 7)], max_chars=200)
    assert len(chunks) > 10 and all(len(c.text) <= 200 for c in chunks)
    assert all(c.start_line == c.end_line == 7 for c in chunks)
    assert " ".join(c.text for c in chunks).split() == line.split()


def test_html_blocks_skip_scripts_and_keep_source_lines() -> None:
    blocks = html_blocks(PAGE_HTML)
    texts = [b.text for b in blocks]
    assert not any("console.log" in t or "font-family" in t for t in texts)
    tyre = next(b for b in blocks if "tyre pressure" in b.text)
    assert (tyre.start_line, tyre.end_line) == (7, 8)
    assert "six bar" in _lines(PAGE_HTML, tyre.start_line, tyre.end_line)
    assert [(b.text, b.heading) for b in blocks if b.heading][1:] == [
        ("Bicycle manual", 1), ("Chain", 2)]


def test_pdf_text_pages_and_numbered_headings(corpus: Path) -> None:
    kind, blocks = read_blocks(corpus / "kettle.pdf")
    assert kind == "pdf"
    chunks = chunk_blocks(blocks)
    descale = next(c for c in chunks if "citric acid" in c.text)
    assert descale.page == 1 and descale.heading == "2. Descaling"
    assert descale.start_line == descale.end_line == 5


def test_fts_query_quotes_terms_and_drops_stopwords() -> None:
    assert fts_query('How do I "drop" a TABLE; OR NOT x?') == '"drop" OR "table"'
    assert fts_query("what is it") == '"what" OR "is" OR "it"'  # only stopwords: keep them
    assert fts_query("???") == ""


# --- indexing ------------------------------------------------------------------------

def test_index_lists_skipped_files_with_reasons(corpus: Path, index: DocumentIndex) -> None:
    report = index.index([corpus])
    skipped = {Path(s.path).name: s.reason for s in report.skipped}
    assert set(skipped) == {"photo.png", "data.dat", "latin1.txt"}
    assert "binary" in skipped["photo.png"] and "NUL" in skipped["data.dat"]
    assert "UTF-8" in skipped["latin1.txt"]
    assert report.indexed == 4 and report.files == 7  # .hidden.md is not walked
    assert report.chunks == index.count_chunks([str(corpus.resolve())]) > 4


def test_reindex_is_incremental_by_mtime_and_hash(corpus: Path, index: DocumentIndex) -> None:
    first = index.index([corpus])
    assert first.indexed == 4
    again = index.index([corpus])
    assert (again.indexed, again.unchanged, again.removed) == (0, 4, 0)
    assert len(again.skipped) == 3  # still listed, not read again

    notes = corpus / "notes.md"
    later = time.time() + 5
    os.utime(notes, (later, later))  # touched, same content: hashed, not re-chunked
    touched = index.index([corpus])
    assert (touched.indexed, touched.unchanged) == (0, 4)

    notes.write_text(notes.read_text() + "\n## Leeks\n\nLeeks are planted out in June.\n")
    os.utime(notes, (later + 5, later + 5))
    (corpus / "billing.py").unlink()
    changed = index.index([corpus])
    assert (changed.indexed, changed.unchanged, changed.removed) == (1, 2, 1)
    assert index.search("leeks planted", [str(corpus.resolve())])[0].heading.endswith("Leeks")
    assert not index.search("invoice tax", [str(corpus.resolve())])


def test_progress_reports_every_file(corpus: Path, index: DocumentIndex) -> None:
    seen = []
    index.index([corpus], progress=seen.append)
    assert seen[-1].files_done == seen[-1].files_total == 7
    assert seen[-1].bytes_done == seen[-1].bytes_total > 0
    assert [p.files_done for p in seen] == list(range(8))


def test_cancel_stops_between_files(corpus: Path, index: DocumentIndex) -> None:
    calls = []
    report = index.index([corpus], cancel=lambda: len(calls) > 1 or bool(calls.append(1)))
    assert report.cancelled and report.indexed + len(report.skipped) <= 3


def test_missing_path_is_one_clear_error(index: DocumentIndex, tmp_path: Path) -> None:
    from slmchat.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="no such file or folder"):
        index.index([tmp_path / "nope"])


def test_unreadable_file_is_skipped_and_retried(corpus: Path, index: DocumentIndex,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import slmchat.engine.retrieval.index as index_mod

    secret = corpus / "secret.md"
    secret.write_text("# Secret\n\nThe vault code is 4711.\n")
    real = index_mod._sha256

    def denied(path: Path) -> str:  # chmod 0 does not stop root, so refuse here
        if path.name == "secret.md":
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(index_mod, "_sha256", denied)
    report = index.index([corpus])
    assert any(Path(s.path).name == "secret.md" and s.reason == "cannot read: Permission denied"
               for s in report.skipped)
    monkeypatch.setattr(index_mod, "_sha256", real)
    again = index.index([corpus])  # read again once it can be, though its mtime is the same
    assert again.indexed == 1 and not any("secret" in s.path for s in again.skipped)
    assert "4711" in index.search("vault code", [str(corpus.resolve())])[0].text


# --- retrieval -----------------------------------------------------------------------

@pytest.mark.parametrize(("question", "name", "needle"), [
    ("How often is the compost heap turned?", "notes.md", "every three weeks"),
    ("What tyre pressure do road tyres want?", "manual.html", "six bar"),
    ("How long is the kettle warranty?", "kettle.pdf", "two years"),
    ("How much is the late payment fee?", "billing.py", "4 euros per week"),
    ("When should I oil the chain?", "manual.html", "after riding in the rain"),
    ("Where does the beehive stand?", "notes.md", "behind the shed"),
])
def test_retrieval_finds_the_passage_first(corpus: Path, index: DocumentIndex, question: str,
                                            name: str, needle: str) -> None:
    index.index([corpus])
    hits = index.search(question, [str(corpus.resolve())], k=3)
    assert hits, question
    best = hits[0]
    assert Path(best.path).name == name and needle in best.text
    assert best.citation.startswith(str(corpus.resolve() / name) + ":")
    # The cited lines hold the passage (HTML/Markdown/source: the file's own lines).
    if name != "kettle.pdf":
        source = (corpus / name).read_text()
        assert needle.split()[0] in _lines(source, best.start_line, best.end_line)


def test_search_is_limited_to_the_attached_roots(corpus: Path, index: DocumentIndex,
                                                 tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "compost.md").write_text("# Compost\n\nThe compost heap is turned daily.\n")
    index.index([corpus, other])
    only_other = index.search("compost heap turned", [str(other.resolve())])
    assert {Path(h.path).parent for h in only_other} == {other.resolve()}
    one_file = str((corpus / "notes.md").resolve())
    assert {h.path for h in index.search("compost heap", [one_file])} == {one_file}
    # A root that is a prefix of another folder's name does not leak it.
    (tmp_path / "docs2").mkdir()
    (tmp_path / "docs2" / "x.md").write_text("compost compost compost\n")
    index.index([tmp_path / "docs2"])
    assert all("docs2" not in h.path for h in index.search("compost", [str(corpus.resolve())]))


def test_fts_syntax_in_questions_is_harmless(corpus: Path, index: DocumentIndex) -> None:
    index.index([corpus])
    for q in ['"unbalanced', "NEAR(a b)", "col:tomatoes", "a* OR -b", "\x00", "(((", "^"]:
        index.search(q, [str(corpus.resolve())])  # no sqlite3.OperationalError


def test_index_file_is_private_and_rebuilds_an_old_layout(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "r.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE files (x)")
    conn.execute("PRAGMA user_version = 0")
    conn.commit()
    conn.close()
    db.chmod(0o600)
    idx = DocumentIndex(db)
    assert idx.count_chunks() == 0
    idx.close()
    assert (db.stat().st_mode & 0o777) == 0o600
