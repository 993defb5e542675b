"""Training data: load local text, validate it, cut it into token blocks, split it.

Accepted sources: a ``.txt`` / ``.md`` file, a folder of them (recursively, plus any
``.jsonl`` inside), or a ``.jsonl`` file whose rows are ``{"text": ...}`` or chat rows
``{"messages": [{"role": ..., "content": ...}, ...]}`` (rendered with the model's chat
template, or a plain transcript when it has none). Every problem a user can fix is a
``DataError`` with one clear line, raised before any model is loaded where possible.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from slmchat.engine.fsutil import read_text_file
from slmchat.errors import DataError

TEXT_SUFFIXES = (".txt", ".md", ".markdown")
JSONL_SUFFIXES = (".jsonl",)


@dataclass(frozen=True)
class Document:
    """One training document: plain text, or chat messages to render with a template."""

    source: str
    text: str | None = None
    messages: tuple[dict[str, str], ...] | None = None


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


def _jsonl_documents(path: Path, text: str) -> list[Document]:
    docs: list[Document] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise DataError(f"{where}: each row must be an object with 'text' or 'messages'")
        if isinstance(row.get("text"), str):
            docs.append(Document(where, text=row["text"]))
        elif isinstance(row.get("messages"), list):
            msgs = row["messages"]
            ok = all(
                isinstance(m, dict) and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str) for m in msgs
            )
            if not ok or not msgs:
                raise DataError(f"{where}: 'messages' must be a non-empty list of "
                                "{'role': ..., 'content': ...} objects")
            docs.append(Document(where, messages=tuple(
                {"role": m["role"], "content": m["content"]} for m in msgs)))
        else:
            raise DataError(f"{where}: row has neither a 'text' string nor a 'messages' list")
    return docs


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


def make_blocks(stream: Sequence[int], block_size: int) -> list[list[int]]:
    """Cut the stream into full blocks; the short tail is dropped (it would need padding)."""
    n = len(stream) // block_size
    return [list(stream[i * block_size:(i + 1) * block_size]) for i in range(n)]


def eval_count(n_blocks: int, eval_fraction: float) -> int:
    """Held-out blocks: ``eval_fraction`` of the blocks, at least one, leaving >= 1 to train."""
    return min(max(1, round(n_blocks * eval_fraction)), n_blocks - 1)


def split_blocks(
    blocks: list[list[int]], eval_fraction: float, seed: int
) -> tuple[list[list[int]], list[list[int]]]:
    """(train, held_out). The held-out blocks are a seeded random sample, so the split is
    the same on resume and spread over the whole text, not just its end."""
    n_eval = eval_count(len(blocks), eval_fraction)
    order = list(range(len(blocks)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_eval])
    train = [b for i, b in enumerate(blocks) if i not in held]
    evals = [b for i, b in enumerate(blocks) if i in held]
    return train, evals


@dataclass
class PreparedData:
    train: list[list[int]]
    eval: list[list[int]]
    preview: DataPreview


def prepare_data(
    path: str | Path, tokenizer: Any, block_size: int, eval_fraction: float = 0.05,
    seed: int = 0,
) -> PreparedData:
    """Load, validate, tokenize and split. Raises DataError with a fix-it message."""
    docs, files, nbytes = load_documents(path)
    stream = tokenize_documents(docs, tokenizer)
    blocks = make_blocks(stream, block_size)
    if len(blocks) < 2:
        need = 2 * block_size
        raise DataError(
            f"the text is too short: {len(stream)} tokens, but one training block plus one "
            f"held-out block of {block_size} tokens need {need}; add text or use a smaller "
            f"--block-size (e.g. {max(16, 2 ** int(math.log2(max(2, len(stream) // 4))))})"
        )
    train, evals = split_blocks(blocks, eval_fraction, seed)
    preview = DataPreview(
        files=len(files), bytes=nbytes, documents=len(docs), tokens=len(stream),
        block_size=block_size, blocks=len(blocks), train_blocks=len(train),
        eval_blocks=len(evals), sha256=data_sha256(path),
    )
    return PreparedData(train=train, eval=evals, preview=preview)
