"""Which tokens of a chat row are the assistant's: the loss mask of ``--mask-prompt``.

Training on chat rows should teach the model to *answer*, not to write the user's
questions or the template's boilerplate (mlx-lm's ``--mask-prompt``). The spans are found
by rendering the conversation's prefixes with the same template: the text before
assistant turn i is the rendering of the turns before it with a generation prompt, and
the turn (with its end-of-turn marker) runs until the rendering of the turns up to and
including it. Tokens whose first character falls in such a span get mask 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slmchat.engine.generation.prompting import ChatMessage, render
from slmchat.errors import DataError

ROLES = ("system", "user", "assistant")


def trained_turns(rows: Sequence[dict[str, Any]]) -> list[bool]:
    """Which turns are learned: every assistant turn unless its row says ``"weight": 0``."""
    return [m.get("role") == "assistant" and m.get("weight", 1) != 0 for m in rows]


def chat_messages(rows: Sequence[dict[str, Any]]) -> list[ChatMessage]:
    return [ChatMessage(m["role"] if m["role"] in ROLES else "user",  # type: ignore[arg-type]
                        m["content"]) for m in rows]


def _closed(tokenizer: Any, msgs: Sequence[ChatMessage]) -> str:
    """The conversation rendered as finished turns (no generation prompt)."""
    if getattr(tokenizer, "chat_template", None):
        dicts = [{"role": m.role, "content": m.content} for m in msgs]
        return str(tokenizer.apply_chat_template(dicts, tokenize=False,
                                                 add_generation_prompt=False))
    text, _ = render(tokenizer, msgs, continue_last=True)
    return text + "\n"


def assistant_spans(
    tokenizer: Any, msgs: Sequence[ChatMessage]
) -> tuple[str, list[tuple[int, int, int]]]:
    """(full text, [(message index, start, end) character spans of assistant turns]).

    The full text is what training renders (the last turn left open: the document's EOS
    closes it). When a template renders prefixes inconsistently (it rewrites earlier
    turns), each assistant content is located in the text instead.
    """
    full, _ = render(tokenizer, msgs, continue_last=True)
    spans: list[tuple[int, int, int]] = []
    consistent = True
    for i, m in enumerate(msgs):
        if m.role != "assistant":
            continue
        before = render(tokenizer, msgs[:i])[0] if i else ""
        through = full if i == len(msgs) - 1 else _closed(tokenizer, msgs[:i + 1])
        if not (full.startswith(before) and full.startswith(through)
                and len(before) <= len(through)):
            consistent = False
            break
        spans.append((i, len(before), len(through)))
    if consistent:
        return full, spans
    spans, pos = [], 0
    for i, m in enumerate(msgs):
        at = full.find(m.content, pos) if m.content else -1
        if at < 0:
            continue
        if m.role == "assistant":
            spans.append((i, at, at + len(m.content)))
        pos = at + len(m.content)
    return full, spans


def masked_ids(
    tokenizer: Any, msgs: Sequence[ChatMessage], trained: Sequence[bool] | None = None,
) -> tuple[list[int], list[int]]:
    """(token ids, mask) of a chat row: mask 1 on the assistant's tokens only, and only
    on the turns ``trained`` says (a row's ``"weight": 0`` turns are context, as in
    OpenAI's chat fine-tuning format)."""
    text, found = assistant_spans(tokenizer, msgs)
    spans = [(a, b) for i, a, b in found if trained is None or trained[i]]
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except (NotImplementedError, TypeError, ValueError) as exc:
        raise DataError("this tokenizer cannot map tokens to text (no offsets), so the "
                        "prompt cannot be masked; train with --no-mask-prompt") from exc
    ids = list(enc["input_ids"])
    mask = []
    for start, end in enc["offset_mapping"]:
        inside = any(a <= start < b for a, b in spans) or (
            end > start and any(a < end <= b for a, b in spans))
        mask.append(1 if inside else 0)
    return ids, mask
