"""Training data: load local text, validate it, cut it into token blocks, split it.

Accepted sources: a ``.txt`` / ``.md`` file, a folder of them (recursively, plus any
``.jsonl`` inside), or a ``.jsonl`` file whose rows are ``{"text": ...}`` or chat rows
``{"messages": [{"role": ..., "content": ...}, ...]}`` (rendered with the model's chat
template, or a plain transcript when it has none). Every problem a user can fix is a
``DataError`` with one clear line, raised before any model is loaded where possible.
"""

from __future__ import annotations

import codecs
import hashlib
import itertools
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from slmchat.engine.finetune.tokens import (
    IDS,
    MASK,
    Blocks,
    TokenWriter,
    cache_key,
    chunked_block_sums,
    id_dtype,
    memmap,
    open_cached,
)
from slmchat.engine.fsutil import read_text_file
from slmchat.errors import DataError

T = TypeVar("T")
TEXT_SUFFIXES = (".txt", ".md", ".markdown")
JSONL_SUFFIXES = (".jsonl",)


@dataclass(frozen=True)
class Document:
    """One training document: plain text, or chat messages to render with a template."""

    source: str
    text: str | None = None
    messages: tuple[dict[str, Any], ...] | None = None


@dataclass(frozen=True)
class DataPreview:
    """The numbers shown before a run starts (preview / panel)."""

    files: int
    bytes: int
    documents: int
    tokens: int
    block_size: int
    blocks: int
    train_blocks: int
    eval_blocks: int
    sha256: str
    masked: bool = False  # chat rows: loss on assistant tokens only
    trained_tokens: int | None = None  # tokens the loss is computed on (train split)
    eval_tokens: int | None = None  # tokens in the held-out blocks (the end of the text)
    eval_warning: str | None = None  # set when fewer than MIN_EVAL_BLOCKS are held out
    auto_block: bool = False  # the block size was chosen from the text's length

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def data_files(path: Path) -> list[Path]:
    """The files a path stands for. Raises DataError if there are none."""
    if not path.exists():
        raise DataError(f"training data not found: {path}")
    if path.is_file():
        # Any UTF-8 text file is accepted; the binary / encoding checks reject the rest.
        return [path]
    files = sorted(
        p for p in path.rglob("*")
        if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES + JSONL_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        raise DataError(f"no .txt, .md or .jsonl files in folder {path}")
    return files


def _jsonl_row(path: Path, lineno: int, line: str) -> Document:
    where = f"{path}:{lineno}"
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg})") from exc
    if not isinstance(row, dict):
        raise DataError(f"{where}: each row must be an object with 'text' or 'messages'")
    if isinstance(row.get("text"), str):
        return Document(where, text=row["text"])
    if isinstance(row.get("messages"), list):
        msgs = row["messages"]
        ok = all(
            isinstance(m, dict) and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str) and m.get("weight", 1) in (0, 1)
            for m in msgs
        )
        if not ok or not msgs:
            raise DataError(f"{where}: 'messages' must be a non-empty list of "
                            "{'role': ..., 'content': ...} objects ('weight': 0 or 1 "
                            "optional)")
        return Document(where, messages=tuple(
            {"role": m["role"], "content": m["content"],
             **({"weight": int(m["weight"])} if "weight" in m else {})} for m in msgs))
    raise DataError(f"{where}: row has neither a 'text' string nor a 'messages' list")


def _jsonl_documents(path: Path, text: str) -> list[Document]:
    return [_jsonl_row(path, lineno, line) for lineno, line in enumerate(text.splitlines(), 1)
            if line.strip()]


def load_documents(path: str | Path) -> tuple[list[Document], list[Path], int]:
    """(documents, files, total bytes). Raises DataError for missing/empty/binary data."""
    root = Path(path).expanduser()
    files = data_files(root)
    docs: list[Document] = []
    total = 0
    for file in files:
        text = read_text_file(file, "training data")
        total += len(text.encode("utf-8"))
        if file.suffix.lower() in JSONL_SUFFIXES:
            docs.extend(_jsonl_documents(file, text))
        elif text.strip():
            docs.append(Document(str(file), text=text))
    if not docs or all(not (d.text or "").strip() and not d.messages for d in docs):
        what = "file" if root.is_file() else "folder"
        raise DataError(f"the training {what} {root} is empty (no text to learn from)")
    return docs, files, total


def data_sha256(path: str | Path) -> str:
    """Content hash of the data (all files, in order, with their relative names)."""
    root = Path(path).expanduser()
    digest = hashlib.sha256()
    for file in data_files(root):
        if root.is_dir():
            digest.update(str(file.relative_to(root)).encode() + b"\0")
        with file.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def render_document(doc: Document, tokenizer: Any) -> str:
    if doc.text is not None:
        return doc.text
    from slmchat.engine.generation.prompting import ChatMessage, render

    roles = {"system", "user", "assistant"}
    msgs = [ChatMessage(m["role"] if m["role"] in roles else "user",  # type: ignore[arg-type]
                        m["content"]) for m in doc.messages or ()]
    text, _ = render(tokenizer, msgs, mode="chat", continue_last=True)
    return text


def tokenize_documents(docs: Sequence[Document], tokenizer: Any) -> list[int]:
    """One token stream: documents joined by EOS so blocks can span document borders."""
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for doc in docs:
        text = render_document(doc, tokenizer)
        # Chat templates already hold their special tokens; plain text gets none.
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        stream.extend(ids)
        if eos is not None:
            stream.append(int(eos))
    return stream


def tokenize_masked(docs: Sequence[Document], tokenizer: Any) -> tuple[list[int], list[int]]:
    """Like ``tokenize_documents``, with a loss mask: 1 on every token of plain text and on
    the assistant's tokens of chat rows (their EOS too when the row ends with the
    assistant), 0 on system/user turns and template text (``--mask-prompt``)."""
    from slmchat.engine.finetune.masking import chat_messages, masked_ids, trained_turns

    eos = tokenizer.eos_token_id
    stream: list[int] = []
    mask: list[int] = []
    for doc in docs:
        if doc.messages is not None:
            msgs = chat_messages(doc.messages)
            trained = trained_turns(doc.messages)
            ids, m = masked_ids(tokenizer, msgs, trained)
            last = 1 if trained and trained[-1] else 0
        else:
            ids = tokenizer(doc.text or "", add_special_tokens=False)["input_ids"]
            m, last = [1] * len(ids), 1
        stream.extend(ids)
        mask.extend(m)
        if eos is not None:
            stream.append(int(eos))
            mask.append(last)
    return stream, mask


def make_blocks(stream: Sequence[int], block_size: int) -> list[list[int]]:
    """Cut the stream into full blocks; the short tail is dropped (it would need padding)."""
    n = len(stream) // block_size
    return [list(stream[i * block_size:(i + 1) * block_size]) for i in range(n)]


MIN_EVAL_BLOCKS = 8  # fewer held-out blocks make the held-out loss too noisy to stop on
AUTO_BLOCK_SIZES = (256, 128, 64, 32)
AUTO_MIN_BLOCKS = 40  # so 8 held-out blocks are at most a fifth of the text


def auto_block_size(n_tokens: int) -> int:
    """The block size when none is given: 256, or smaller for a small text so that it
    still cuts into ``AUTO_MIN_BLOCKS`` blocks (a 6k-token file: 128), because a file of
    a few dozen blocks held out at 8 blocks would train on little and repeat it for
    many epochs."""
    for size in AUTO_BLOCK_SIZES:
        if n_tokens // size >= AUTO_MIN_BLOCKS:
            return size
    return AUTO_BLOCK_SIZES[-1]


def eval_count(n_blocks: int, eval_fraction: float) -> int:
    """Held-out blocks: at least ``eval_fraction`` of the blocks and at least
    ``MIN_EVAL_BLOCKS``, but never more than half of them (the rest trains)."""
    want = max(math.ceil(n_blocks * eval_fraction - 1e-9), MIN_EVAL_BLOCKS)
    return max(1, min(want, n_blocks // 2))


def split_blocks(
    blocks: Sequence[T], eval_fraction: float, doc_of: Sequence[int] | None = None,
) -> tuple[list[T], list[T]]:
    """(train, held_out) by position: the held-out blocks are the END of each document,
    so the held-out score is on text that follows what the model trained on -- how a
    user judges a fine-tune -- not on blocks from between training blocks, which a
    model that memorises its text also predicts well.

    ``doc_of[i]`` is the document of ``blocks[i]`` (blocks in text order; None: one
    document). ``eval_count`` blocks are held out in all, shared among the documents in
    proportion to their blocks (largest remainder, ties to the later document), each
    document giving its last ones."""
    n = len(blocks)
    n_eval = eval_count(n, eval_fraction)
    docs = list(doc_of) if doc_of is not None else [0] * n
    sizes: dict[int, int] = {}
    for d in docs:
        sizes[d] = sizes.get(d, 0) + 1
    quota = {d: n_eval * k // n for d, k in sizes.items()}
    spare = n_eval - sum(quota.values())
    order = sorted(sizes, key=lambda d: (-(n_eval * sizes[d] % n), -d))
    for d in order[:spare]:
        quota[d] += 1
    seen: dict[int, int] = {}
    train: list[T] = []
    evals: list[T] = []
    for block, d in zip(blocks, docs, strict=True):
        seen[d] = seen.get(d, 0) + 1
        (evals if seen[d] > sizes[d] - quota[d] else train).append(block)
    return train, evals


def eval_warning(n_blocks: int, n_eval: int, block_size: int) -> str | None:
    """The line shown when the text is too short for ``MIN_EVAL_BLOCKS`` held-out blocks."""
    if n_eval >= MIN_EVAL_BLOCKS:
        return None
    smaller = block_size // 2
    hint = (f"; a smaller --block-size (e.g. {smaller}) or more text gives a steadier one"
            if smaller >= 8 else "; more text gives a steadier one")
    return (f"only {n_eval} held-out block(s) of {block_size} tokens (the text has "
            f"{n_blocks} blocks; {MIN_EVAL_BLOCKS} are wanted): the held-out perplexity is "
            f"noisy{hint}")


@dataclass
class PreparedData:
    # Blocks of token ids (lists, or ``tokens.Blocks`` views over the token file).
    train: Sequence[list[int]]
    eval: Sequence[list[int]]
    preview: DataPreview
    # Loss masks (1 = train on this token) parallel to train/eval; None: every token.
    train_mask: Sequence[list[int]] | None = None
    eval_mask: Sequence[list[int]] | None = None
    tokens_dir: Path | None = None  # the cached tokenisation the blocks are read from


# -- streaming tokenisation ---------------------------------------------------------------
# Memory while reading is bounded by the piece being tokenised, not the data: READ_BYTES of
# text at a time (cut after a newline), batch-encoded in PIECE_CHARS pieces, its ids written
# straight to the token file. Cuts fall after a newline that a non-space follows, where
# byte-level BPE (GPT-2, Llama 3, Qwen, SmolLM) never merges across, so the ids are those of
# the whole text; a SentencePiece tokenizer may differ in one token per piece.
READ_BYTES = 1 << 20
PIECE_CHARS = 64 << 10
DOC_BATCH = 256  # JSONL rows tokenised per call
Progress = Callable[[int, int], None]  # (bytes read, bytes in all)


def _cut(buf: bytes, whole_lines: bool) -> int:
    """Where this piece of a file ends: after the last newline a non-space follows, else
    after any newline; with no newline 0 when whole lines are needed (read on), else
    before the last space or at the last UTF-8 character boundary."""
    pos = buf.rfind(b"\n", 0, len(buf) - 1)
    for _ in range(64):
        if pos < 0:
            break
        if buf[pos + 1:pos + 2] not in (b" ", b"\t", b"\n", b"\r"):
            return pos + 1
        pos = buf.rfind(b"\n", 0, pos)
    nl = buf.rfind(b"\n")
    if nl >= 0:
        return nl + 1
    if whole_lines:
        return 0
    space = buf.rfind(b" ")
    if space > 0:
        return space
    i = len(buf) - 1
    while i > 0 and buf[i] & 0xC0 == 0x80:
        i -= 1
    return i or len(buf)


def _pieces(text: str, size: int = PIECE_CHARS) -> list[str]:
    """``text`` in pieces of about ``size`` characters, cut like ``_cut``."""
    out: list[str] = []
    start = 0
    while len(text) - start > size:
        cut = text.rfind("\n", start, start + size)
        while cut > start and text[cut + 1:cut + 2].isspace():
            cut = text.rfind("\n", start, cut)
        if cut <= start:
            break
        out.append(text[start:cut + 1])
        start = cut + 1
    out.append(text[start:])
    return out


def read_chunks(path: Path, whole_lines: bool = False,
                advance: Callable[[int], None] | None = None) -> Iterator[str]:
    """A UTF-8 text file as decoded pieces of about READ_BYTES (a BOM dropped), with the
    checks of ``fsutil.read_text_file``: missing, oversized, binary, not UTF-8 (the
    offset of the bad byte). ``advance(n)``: n more bytes of the file were read."""
    from slmchat.engine.fsutil import MAX_TEXT_BYTES

    path = path.expanduser()
    if not path.exists():
        raise DataError(f"training data not found: {path}")
    try:
        size = path.stat().st_size
        if size > MAX_TEXT_BYTES:
            raise DataError(f"{path} is {size / 2**30:.1f} GiB; the limit is "
                            f"{MAX_TEXT_BYTES / 2**30:.0f} GiB")
        fh = path.open("rb")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with fh:
        offset, carry, first = 0, b"", True
        while True:
            try:
                raw = fh.read(READ_BYTES)
            except OSError as exc:
                raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
            if advance is not None:
                advance(len(raw))
            if first:
                first = False
                if b"\x00" in raw[:65536]:
                    raise DataError(f"{path} looks binary (it contains NUL bytes); give a "
                                    "UTF-8 text file")
                if raw.startswith(codecs.BOM_UTF8):
                    raw, offset = raw[3:], 3
            eof = not raw
            buf = carry + raw
            cut = len(buf) if eof else _cut(buf, whole_lines)
            piece, carry = buf[:cut], buf[cut:]
            if piece:
                try:
                    text = piece.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DataError(
                        f"{path} is not valid UTF-8 (bad byte at offset {offset + exc.start}); "
                        "convert it first, e.g. iconv -f latin1 -t utf-8") from exc
                offset += len(piece)
                yield text
            if eof:
                return


def _encode(tokenizer: Any, pieces: list[str]) -> list[list[int]]:
    if len(pieces) == 1:  # most pieces: no batch overhead
        return [tokenizer(pieces[0], add_special_tokens=False)["input_ids"]]
    return list(tokenizer(pieces, add_special_tokens=False)["input_ids"])


@dataclass
class _Counts:
    bytes: int = 0
    documents: int = 0
    chat: int = 0
    content: bool = False


def _tokenise_text_file(file: Path, tokenizer: Any, writer: TokenWriter, counts: _Counts,
                        advance: Callable[[int], None]) -> None:
    start, blank = writer.count, True
    for text in read_chunks(file, advance=advance):
        counts.bytes += len(text.encode("utf-8"))
        blank = blank and text.isspace()
        enc = _encode(tokenizer, _pieces(text))
        writer.add(itertools.chain.from_iterable(enc), sum(map(len, enc)))
    if blank:  # whitespace only: not a document (as before)
        writer.truncate(start)
        return
    counts.documents += 1
    counts.content = True
    eos = tokenizer.eos_token_id
    if eos is not None:
        writer.add([int(eos)], 1)


def _tokenise_jsonl_file(file: Path, tokenizer: Any, writer: TokenWriter, counts: _Counts,
                         masked: bool, advance: Callable[[int], None]) -> None:
    batch: list[Document] = []

    def flush() -> None:
        if masked:
            ids, mask = tokenize_masked(batch, tokenizer)
            writer.add(ids, len(ids), mask)
        else:
            ids = tokenize_documents(batch, tokenizer)
            writer.add(ids, len(ids))
        batch.clear()

    lineno = 0
    for text in read_chunks(file, whole_lines=True, advance=advance):
        counts.bytes += len(text.encode("utf-8"))
        for line in text.splitlines():
            lineno += 1
            if not line.strip():
                continue
            doc = _jsonl_row(file, lineno, line)
            counts.documents += 1
            if doc.messages is not None:
                counts.chat += 1
                counts.content = True
            elif (doc.text or "").strip():
                counts.content = True
            batch.append(doc)
            if len(batch) >= DOC_BATCH:
                flush()
    if batch:
        flush()


def tokenise(path: str | Path, tokenizer: Any, mask_prompt: bool = True,
             progress: Progress | None = None) -> tuple[dict[str, Any], Path]:
    """Tokenise the data once into the token cache (or find it there): (meta, folder).

    The folder holds ``ids.bin`` (the token stream: documents joined by EOS, as
    ``tokenize_documents``), ``mask.bin`` when chat rows are masked (as
    ``tokenize_masked``) and ``meta.json`` (files, bytes, documents, tokens, sha256, ...).
    Raises DataError for missing, empty, binary or malformed data."""
    root = Path(path).expanduser()
    files = data_files(root)
    sha = data_sha256(root)
    # Chat rows can only come from JSONL; without any, masking changes nothing.
    want_mask = mask_prompt and any(f.suffix.lower() in JSONL_SUFFIXES for f in files)
    key = cache_key(sha, tokenizer, want_mask)
    cached = open_cached(key)
    if cached is not None:
        return cached
    total = sum(f.stat().st_size for f in files)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    writer = TokenWriter(key, id_dtype(tokenizer), want_mask)
    counts = _Counts()
    ends: list[int] = []  # where each file's tokens end: the split holds out each file's end
    try:
        for file in files:
            if file.suffix.lower() in JSONL_SUFFIXES:
                _tokenise_jsonl_file(file, tokenizer, writer, counts, want_mask, advance)
            else:
                _tokenise_text_file(file, tokenizer, writer, counts, advance)
            ends.append(writer.count)
        if not counts.content:
            what = "file" if root.is_file() else "folder"
            raise DataError(f"the training {what} {root} is empty (no text to learn from)")
        meta = {"files": len(files), "bytes": counts.bytes, "documents": counts.documents,
                "sha256": sha, "mask_sum": writer.mask_sum, "doc_ends": ends}
        folder = writer.commit(meta, masked=want_mask and counts.chat > 0)
    except BaseException:
        writer.discard()
        raise
    found = open_cached(key)
    if found is None:
        raise DataError(f"the tokenised data in {folder} cannot be read back")
    return found


def prepare_data(
    path: str | Path, tokenizer: Any, block_size: int | None, eval_fraction: float = 0.1,
    seed: int = 0, mask_prompt: bool = True, progress: Progress | None = None,
) -> PreparedData:
    """Load, validate, tokenize and split. Raises DataError with a fix-it message.

    ``block_size`` None: ``auto_block_size`` of the token count. The held-out blocks
    are the end of each file (``split_blocks``). ``mask_prompt``: chat rows train on
    the assistant's tokens only (plain text is always trained on whole). The data is
    tokenised once (``tokenise``, cached by content and tokenizer) and the blocks are
    views over that token file, so memory stays bounded whatever the size of the data;
    ``progress(done, total)`` is called with the bytes read while tokenising. ``seed``
    is kept for callers; the split no longer depends on it."""
    del seed
    meta, folder = tokenise(path, tokenizer, mask_prompt, progress)
    n_tokens, masking = int(meta["tokens"]), bool(meta["masked"])
    auto = block_size is None
    size = auto_block_size(n_tokens) if block_size is None else block_size
    ids = memmap(folder / IDS, meta["dtype"], n_tokens)
    n_blocks = n_tokens // size
    sums = None
    if masking:
        sums = chunked_block_sums(folder / MASK, size, n_blocks)
        kept = np.flatnonzero(sums > 0)  # prompt-only blocks teach nothing
    else:
        kept = np.arange(n_blocks, dtype=np.int64)
    if len(kept) < 2:
        _too_short(n_tokens, size, len(kept), masking, int(meta.get("mask_sum") or 0))
    # A block belongs to the file its first token is in (files end at ``doc_ends``).
    ends = np.asarray(meta.get("doc_ends") or [n_tokens], dtype=np.int64)
    doc_of = np.searchsorted(ends, kept * size, side="right")
    train_l, eval_l = split_blocks(kept.tolist(), eval_fraction, doc_of.tolist())
    del kept, doc_of
    train_i = np.asarray(train_l, dtype=np.int64)
    eval_i = np.asarray(eval_l, dtype=np.int64)
    train, evals = Blocks(ids, size, train_i), Blocks(ids, size, eval_i)
    trained = int(sums[train_i].sum()) if sums is not None else len(train) * size
    eval_tokens = int(sums[eval_i].sum()) if sums is not None else len(evals) * size
    preview = DataPreview(
        files=int(meta["files"]), bytes=int(meta["bytes"]), documents=int(meta["documents"]),
        tokens=n_tokens, block_size=size, blocks=len(train) + len(evals),
        train_blocks=len(train), eval_blocks=len(evals), sha256=str(meta["sha256"]),
        masked=masking, trained_tokens=trained, eval_tokens=eval_tokens,
        eval_warning=eval_warning(len(train) + len(evals), len(evals), size), auto_block=auto,
    )
    if not masking:
        return PreparedData(train=train, eval=evals, preview=preview, tokens_dir=folder)
    mask = memmap(folder / MASK, np.dtype(np.uint8), n_tokens)
    return PreparedData(train=train, eval=evals, preview=preview,
                        train_mask=Blocks(mask, size, train_i),
                        eval_mask=Blocks(mask, size, eval_i), tokens_dir=folder)


def _too_short(n_tokens: int, block_size: int, kept: int, masking: bool,
               trainable: int) -> None:
    need = 2 * block_size
    if masking and n_tokens >= need:  # long enough: masking left too little
        raise DataError(
            f"too few tokens to train on: {trainable} of {n_tokens} tokens are "
            f"assistant replies (the prompts are masked) and {kept} block(s) of "
            f"{block_size} tokens hold any, but one training plus one held-out block "
            "are needed; add chat rows with assistant replies, or train on every token "
            "with --no-mask-prompt")
    smaller = min(block_size // 2, max(16, 2 ** int(math.log2(max(2, n_tokens // 4)))))
    hint = f" or use a smaller --block-size (e.g. {smaller})" if smaller >= 8 else ""
    raise DataError(
        f"the text is too short: {n_tokens} tokens, but one training block plus one "
        f"held-out block of {block_size} tokens need {need}; add text{hint}")
