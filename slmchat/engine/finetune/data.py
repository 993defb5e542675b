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
from typing import Any, TypeVar

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
                and isinstance(m.get("content"), str) and m.get("weight", 1) in (0, 1)
                for m in msgs
            )
            if not ok or not msgs:
                raise DataError(f"{where}: 'messages' must be a non-empty list of "
                                "{'role': ..., 'content': ...} objects ('weight': 0 or 1 "
                                "optional)")
            docs.append(Document(where, messages=tuple(
                {"role": m["role"], "content": m["content"],
                 **({"weight": int(m["weight"])} if "weight" in m else {})} for m in msgs)))
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


def eval_count(n_blocks: int, eval_fraction: float) -> int:
    """Held-out blocks: ``eval_fraction`` of the blocks, at least one, leaving >= 1 to train."""
    return min(max(1, round(n_blocks * eval_fraction)), n_blocks - 1)


def split_blocks(
    blocks: list[T], eval_fraction: float, seed: int
) -> tuple[list[T], list[T]]:
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
    # Loss masks (1 = train on this token) parallel to train/eval; None: every token.
    train_mask: list[list[int]] | None = None
    eval_mask: list[list[int]] | None = None


def prepare_data(
    path: str | Path, tokenizer: Any, block_size: int, eval_fraction: float = 0.05,
    seed: int = 0, mask_prompt: bool = True,
) -> PreparedData:
    """Load, validate, tokenize and split. Raises DataError with a fix-it message.

    ``mask_prompt``: chat rows train on the assistant's tokens only (plain text is
    always trained on whole)."""
    docs, files, nbytes = load_documents(path)
    masking = mask_prompt and any(d.messages is not None for d in docs)
    pairs: list[tuple[list[int], list[int] | None]]
    if masking:
        stream, mask = tokenize_masked(docs, tokenizer)
        pairs = [(b, m) for b, m in zip(make_blocks(stream, block_size),
                                         make_blocks(mask, block_size), strict=True)
                 if any(m)]  # a block of prompt tokens only has nothing to learn from
    else:
        stream = tokenize_documents(docs, tokenizer)
        pairs = [(b, None) for b in make_blocks(stream, block_size)]
    blocks = [b for b, _ in pairs]
    if len(blocks) < 2:
        need = 2 * block_size
        if masking and len(stream) >= need:  # long enough: masking left too little
            trainable = sum(mask)
            raise DataError(
                f"too few tokens to train on: {trainable} of {len(stream)} tokens are "
                f"assistant replies (the prompts are masked) and {len(blocks)} block(s) of "
                f"{block_size} tokens hold any, but one training plus one held-out block "
                "are needed; add chat rows with assistant replies, or train on every token "
                "with --no-mask-prompt")
        smaller = min(block_size // 2, max(16, 2 ** int(math.log2(max(2, len(stream) // 4)))))
        hint = f" or use a smaller --block-size (e.g. {smaller})" if smaller >= 8 else ""
        raise DataError(
            f"the text is too short: {len(stream)} tokens, but one training block plus one "
            f"held-out block of {block_size} tokens need {need}; add text{hint}")
    train_pairs, eval_pairs = split_blocks(pairs, eval_fraction, seed)
    train = [b for b, _ in train_pairs]
    evals = [b for b, _ in eval_pairs]
    trained = (sum(sum(m) for _, m in train_pairs if m is not None) if masking
               else len(train) * block_size)
    preview = DataPreview(
        files=len(files), bytes=nbytes, documents=len(docs), tokens=len(stream),
        block_size=block_size, blocks=len(blocks), train_blocks=len(train),
        eval_blocks=len(evals), sha256=data_sha256(path), masked=masking,
        trained_tokens=trained,
    )
    if not masking:
        return PreparedData(train=train, eval=evals, preview=preview)
    return PreparedData(train=train, eval=evals, preview=preview,
                        train_mask=[m for _, m in train_pairs if m is not None],
                        eval_mask=[m for _, m in eval_pairs if m is not None])
