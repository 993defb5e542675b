"""The document index: SQLite FTS5 with BM25 ranking, in its own database file.

``retrieval.db`` in the data folder is a cache that can always be rebuilt from the
files, so it is kept apart from the conversations database (its schema has its own
version; an unknown older layout is dropped and rebuilt, never migrated).

Re-indexing is incremental: a file whose size and mtime are unchanged is not read; one
whose content hash is unchanged is not re-chunked; files that disappeared from an
indexed folder are removed. Binary and unreadable files are recorded as skipped with
their reason, so an unchanged one is not read again either.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from slmchat.engine.retrieval.chunking import DEFAULT_MAX_CHARS, chunk_blocks
from slmchat.engine.retrieval.readers import Unreadable, read_blocks
from slmchat.errors import InvalidParameterError

DB_NAME = "retrieval.db"
INDEX_VERSION = 1
# Folders that hold tools' files, not the user's documents.
SKIP_DIRS = frozenset({"__pycache__", "node_modules", "site-packages", "venv"})


@dataclass(frozen=True)
class IndexProgress:
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    path: str


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class IndexReport:
    files: int = 0  # files seen under the roots (indexed + unchanged + skipped)
    indexed: int = 0  # read and chunked now (new or changed)
    unchanged: int = 0
    removed: int = 0
    chunks: int = 0  # chunks of the indexed files, all roots
    skipped: list[Skipped] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0

    def summary(self) -> str:
        text = (f"{self.files} file(s): {self.indexed} indexed, {self.unchanged} unchanged, "
                f"{len(self.skipped)} skipped, {self.removed} removed; {self.chunks} chunks")
        return text + (" (cancelled)" if self.cancelled else "")


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    path: str
    start_line: int
    end_line: int
    heading: str
    text: str
    score: float  # BM25 as SQLite reports it: lower (more negative) is better
    page: int | None = None
    sha256: str = ""

    @property
    def citation(self) -> str:
        """``file:start-end`` (and the page for PDFs)."""
        lines = (f"{self.start_line}" if self.start_line == self.end_line
                 else f"{self.start_line}-{self.end_line}")
        page = f" (page {self.page})" if self.page else ""
        return f"{self.path}:{lines}{page}"


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS files (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('indexed', 'skipped')),
        reason TEXT,
        chunks INTEGER NOT NULL DEFAULT 0,
        indexed_at REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS chunks (
        id INTEGER PRIMARY KEY,
        file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
        ord INTEGER NOT NULL,
        start_line INTEGER NOT NULL,
        end_line INTEGER NOT NULL,
        page INTEGER,
        heading TEXT NOT NULL,
        title TEXT NOT NULL,
        text TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS chunks_by_file ON chunks(file_id, ord)",
    # External content: the index refers to chunk rows; porter stemming so that "keeps"
    # finds "keep". ``title`` is the file name plus the heading path.
    """CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
        title, text, content='chunks', content_rowid='id',
        tokenize='porter unicode61 remove_diacritics 2'
    )""",
    """CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN
        INSERT INTO chunks_fts(rowid, title, text) VALUES (new.id, new.title, new.text);
    END""",
    """CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN
        INSERT INTO chunks_fts(chunks_fts, rowid, title, text)
            VALUES ('delete', old.id, old.title, old.text);
    END""",
)

# Words too common to help BM25 pick a passage; they only add cost to an OR query.
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for
from further had has have having he her here hers herself him himself his how i if in
into is it its itself just me more most my myself no nor not now of off on once only or
other our ours ourselves out over own same she should so some such than that the their
theirs them themselves then there these they this those through to too under until up
very was we were what when where which while who whom why will with would you your yours
yourself yourselves tell explain please describe using use used say says said
""".split())  # noqa: SIM905 - a readable word list

_WORD = re.compile(r"\w+", re.UNICODE)


def fts_query(question: str, max_terms: int = 24) -> str:
    """An FTS5 OR-query of the question's content words, each quoted (no FTS syntax
    from the user's text). Empty when the question has no words at all."""
    words = [w.lower() for w in _WORD.findall(question.replace("_", " "))]
    keep = [w for w in words if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]
    terms = list(dict.fromkeys(keep or words))[:max_terms]
    return " OR ".join(f'"{t}"' for t in terms)


def _create_private(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _walk(root: Path) -> Iterator[Path]:
    """Files under ``root`` in a stable order; hidden files and folders, tool folders
    and symlinked folders (loops) are left out."""
    if root.is_file():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS)
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def _under(paths_col: str, roots: Sequence[str]) -> tuple[str, list[object]]:
    """SQL filter: the file is one of ``roots`` or lies below one of them."""
    if not roots:
        return "1", []
    parts, params = [], []
    for root in roots:
        prefix = root.rstrip("/") + "/"
        parts.append(f"({paths_col} = ? OR substr({paths_col}, 1, ?) = ?)")
        params += [root, len(prefix), prefix]
    return "(" + " OR ".join(parts) + ")", params


def resolve_roots(paths: Iterable[str | Path]) -> list[str]:
    """Absolute, resolved paths; a path that does not exist is a one-line error."""
    out = []
    for p in paths:
        path = Path(p).expanduser()
        if not path.exists():
            raise InvalidParameterError(f"no such file or folder: {p}")
        out.append(str(path.resolve()))
    return list(dict.fromkeys(out))


class DocumentIndex:
    """Index and search local files. Safe to share between threads (one lock)."""

    def __init__(self, path: Path | str, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        self.path = Path(path)
        self.max_chars = max_chars
        _create_private(self.path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON"):
            self._db.execute(f"PRAGMA {pragma}")
        self._ensure_schema()

    @classmethod
    def open_default(cls) -> DocumentIndex:
        from slmchat.paths import data_dir

        return cls(data_dir() / DB_NAME)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _ensure_schema(self) -> None:
        with self._lock:
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            if version > INDEX_VERSION:
                raise InvalidParameterError(
                    f"the document index {self.path} is from a newer slmchat "
                    f"(version {version}); delete it to rebuild")
            if version != INDEX_VERSION:  # older layout: a cache, so start over
                for name in ("chunks_fts", "chunks", "files"):
                    self._db.execute(f"DROP TABLE IF EXISTS {name}")
            for statement in _SCHEMA:
                self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {INDEX_VERSION}")

    # --- indexing ---------------------------------------------------------------------

    def index(
        self, paths: Iterable[str | Path],
        progress: Callable[[IndexProgress], None] | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> IndexReport:
        """Bring the index up to date for ``paths`` (files or folders)."""
        t0 = time.perf_counter()
        roots = resolve_roots(paths)
        report = IndexReport()
        files: list[tuple[Path, os.stat_result]] = []
        walk_errors: list[Skipped] = []
        for root in roots:
            for f in _walk(Path(root)):
                try:
                    st = f.stat()
                except OSError as exc:
                    walk_errors.append(Skipped(str(f), f"cannot read: {exc.strerror or exc}"))
                    continue
                if f.is_file():
                    files.append((f, st))
        seen = {str(f) for f, _ in files}
        total_bytes = sum(st.st_size for _, st in files)
        done_bytes = 0
        for i, (f, st) in enumerate(files):
            if cancel is not None and cancel():
                report.cancelled = True
                break
            if progress is not None:
                progress(IndexProgress(i, len(files), done_bytes, total_bytes, str(f)))
            self._index_file(f, st, report)
            done_bytes += st.st_size
        if not report.cancelled:
            report.removed = self._remove_missing(roots, seen)
            if progress is not None:
                progress(IndexProgress(len(files), len(files), total_bytes, total_bytes, ""))
        report.files = len(files)
        # Skipped now or on an earlier run (an unchanged binary file is not read again).
        report.skipped = walk_errors + [s for s in self.skipped(roots) if s.path in seen]
        report.chunks = self.count_chunks(roots)
        report.seconds = time.perf_counter() - t0
        return report

    def _index_file(self, path: Path, st: os.stat_result, report: IndexReport) -> None:
        key = str(path)
        with self._lock:
            row = self._db.execute(
                "SELECT id, size, mtime_ns, sha256, status FROM files WHERE path = ?",
                (key,)).fetchone()
        if row is not None and row["size"] == st.st_size and row["mtime_ns"] == st.st_mtime_ns:
            report.unchanged += row["status"] == "indexed"
            return
        try:
            digest = _sha256(path)
        except OSError as exc:
            # mtime -1: read it again next time (permissions may be fixed meanwhile).
            self._record_skip(key, st, "", f"cannot read: {exc.strerror or exc}", retry=True)
            return
        if row is not None and row["sha256"] == digest:  # touched, not changed
            with self._lock:
                self._db.execute("UPDATE files SET mtime_ns = ?, size = ? WHERE id = ?",
                                 (st.st_mtime_ns, st.st_size, row["id"]))
            report.unchanged += row["status"] == "indexed"
            return
        try:
            kind, blocks = read_blocks(path)
            chunks = chunk_blocks(blocks, self.max_chars)
            if not chunks:
                raise Unreadable("no text")
        except Unreadable as exc:
            self._record_skip(key, st, digest, str(exc))
            return
        title = path.stem.replace("_", " ").replace("-", " ")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._delete_file(key)
                cur = self._db.execute(
                    "INSERT INTO files(path, kind, size, mtime_ns, sha256, status, reason, "
                    "chunks, indexed_at) VALUES (?, ?, ?, ?, ?, 'indexed', NULL, ?, ?)",
                    (key, kind, st.st_size, st.st_mtime_ns, digest, len(chunks), time.time()))
                file_id = cur.lastrowid
                self._db.executemany(
                    "INSERT INTO chunks(file_id, ord, start_line, end_line, page, heading, "
                    "title, text) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(file_id, n, c.start_line, c.end_line, c.page, c.heading,
                      f"{title} {c.heading}".strip(), c.text) for n, c in enumerate(chunks)])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        report.indexed += 1

    def _record_skip(self, key: str, st: os.stat_result, digest: str, reason: str,
                     retry: bool = False) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._delete_file(key)
                self._db.execute(
                    "INSERT INTO files(path, kind, size, mtime_ns, sha256, status, reason, "
                    "chunks, indexed_at) VALUES (?, '', ?, ?, ?, 'skipped', ?, 0, ?)",
                    (key, st.st_size, -1 if retry else st.st_mtime_ns, digest, reason,
                     time.time()))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _delete_file(self, key: str) -> None:
        """Within a transaction: the file's chunks (through the FTS trigger) and row."""
        self._db.execute("DELETE FROM chunks WHERE file_id IN (SELECT id FROM files WHERE path = ?)",
                         (key,))
        self._db.execute("DELETE FROM files WHERE path = ?", (key,))

    def _remove_missing(self, roots: Sequence[str], seen: set[str]) -> int:
        where, params = _under("path", roots)
        with self._lock:
            known = [r["path"] for r in
                     self._db.execute(f"SELECT path FROM files WHERE {where}", params)]
            gone = [p for p in known if p not in seen]
            if gone:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for key in gone:
                        self._delete_file(key)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
        return len(gone)

    # --- reading ----------------------------------------------------------------------

    def skipped(self, roots: Sequence[str] = ()) -> list[Skipped]:
        where, params = _under("path", roots)
        with self._lock:
            rows = self._db.execute(
                f"SELECT path, reason FROM files WHERE status = 'skipped' AND {where} "
                "ORDER BY path", params).fetchall()
        return [Skipped(r["path"], r["reason"] or "") for r in rows]

    def count_chunks(self, roots: Sequence[str] = ()) -> int:
        where, params = _under("f.path", roots)
        with self._lock:
            row = self._db.execute(
                f"SELECT count(*) FROM chunks c JOIN files f ON f.id = c.file_id WHERE {where}",
                params).fetchone()
        return int(row[0])

    def search(self, question: str, roots: Sequence[str] = (), k: int = 8,
               title_weight: float = 2.0) -> list[Hit]:
        """The ``k`` best chunks for ``question`` (BM25) among files under ``roots``."""
        query = fts_query(question)
        if not query:
            return []
        where, params = _under("f.path", roots)
        sql = (
            "SELECT c.id, f.path, f.sha256, c.start_line, c.end_line, c.page, c.heading, "
            f"c.text, bm25(chunks_fts, {float(title_weight)}, 1.0) AS score "
            "FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
            "JOIN files f ON f.id = c.file_id "
            f"WHERE chunks_fts MATCH ? AND {where} ORDER BY score LIMIT ?"
        )
        with self._lock:
            rows = self._db.execute(sql, [query, *params, k]).fetchall()
        return [self._hit(r) for r in rows]

    def chunk(self, chunk_id: int) -> Hit | None:
        with self._lock:
            r = self._db.execute(
                "SELECT c.id, f.path, f.sha256, c.start_line, c.end_line, c.page, c.heading, "
                "c.text, 0.0 AS score FROM chunks c JOIN files f ON f.id = c.file_id "
                "WHERE c.id = ?", (chunk_id,)).fetchone()
        return self._hit(r) if r is not None else None

    @staticmethod
    def _hit(r: sqlite3.Row) -> Hit:
        return Hit(chunk_id=int(r["id"]), path=r["path"], start_line=int(r["start_line"]),
                   end_line=int(r["end_line"]), heading=r["heading"], text=r["text"],
                   score=float(r["score"]), page=r["page"], sha256=r["sha256"])
