"""Putting retrieved passages into the prompt, within the context budget.

The conversation comes first: passages only get the tokens left after it (and after
``max_new_tokens``), capped by ``max_context_tokens`` because a small model answers
worse, not better, when the question drowns in text. Passages are added best first;
one that does not fit is skipped for a shorter one further down. The passages go into
the last user message (the conversation store keeps the user's own text); what was
used is returned for the reply's provenance and citations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmchat.engine.generation.prompting import ChatMessage, Prompt
from slmchat.engine.retrieval.index import DocumentIndex, Hit

DEFAULT_K = 6  # candidates fetched per question
DEFAULT_MAX_CONTEXT_TOKENS = 768
MIN_CONTEXT_TOKENS = 48  # below this no passage is worth adding

INSTRUCTION = "Answer the question using the excerpts from the user's files below."

Measure = Callable[[Sequence[ChatMessage]], Prompt]


def excerpt(n: int, hit: Hit) -> str:
    lines = (f"{hit.start_line}" if hit.start_line == hit.end_line
             else f"{hit.start_line}-{hit.end_line}")
    head = f"[{n}] {Path(hit.path).name}:{lines}"
    if hit.heading:
        head += f" ({hit.heading})"
    return f"{head}\n{hit.text.strip()}"


def with_context(question: str, hits: Sequence[Hit]) -> str:
    if not hits:
        return question
    parts = [INSTRUCTION, "", *(excerpt(n, h) + "\n" for n, h in enumerate(hits, 1)),
             f"Question: {question}"]
    return "\n".join(parts)


@dataclass(frozen=True)
class Augmented:
    messages: list[ChatMessage]
    sources: list[Hit] = field(default_factory=list)
    context_tokens: int = 0
    candidates: int = 0

    def provenance(self) -> dict[str, Any]:
        """What the reply's provenance records: the chunks used and where they came from."""
        return {
            "chunks": [h.chunk_id for h in self.sources],
            "sources": [{"chunk_id": h.chunk_id, "path": h.path, "start_line": h.start_line,
                         "end_line": h.end_line, "page": h.page, "sha256": h.sha256}
                        for h in self.sources],
            "context_tokens": self.context_tokens,
            "candidates": self.candidates,
        }


def last_user_index(messages: Sequence[ChatMessage]) -> int | None:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].role == "user":
            return i
    return None


def fit_context(
    messages: Sequence[ChatMessage], hits: Sequence[Hit], measure: Measure,
    max_new_tokens: int, max_context_tokens: int = DEFAULT_MAX_CONTEXT_TOKENS,
) -> Augmented:
    """The conversation with the best ``hits`` that fit put into its last user message.

    ``measure`` builds the prompt (``Engine.preview_prompt``): a passage is kept only if
    the prompt still holds every turn the plain conversation kept, untruncated, and the
    passages add at most ``max_context_tokens``.
    """
    messages = list(messages)
    at = last_user_index(messages)
    if at is None or not hits:
        return Augmented(messages, candidates=len(hits))
    base = measure(messages)
    left = base.context_length - max_new_tokens - base.prompt_tokens
    limit = min(left, max_context_tokens)
    if limit < MIN_CONTEXT_TOKENS:
        return Augmented(messages, candidates=len(hits))
    question = messages[at].content
    chosen: list[Hit] = []
    best = messages
    used = 0
    for hit in hits:
        trial = [*messages[:at], ChatMessage("user", with_context(question, [*chosen, hit])),
                 *messages[at + 1:]]
        p = measure(trial)
        extra = p.prompt_tokens - base.prompt_tokens
        if p.truncated or p.dropped_messages > base.dropped_messages or extra > limit:
            continue  # too long: a shorter passage further down may still fit
        chosen.append(hit)
        best, used = trial, extra
    return Augmented(best, chosen, used, len(hits))


def retrieve(
    index: DocumentIndex, roots: Sequence[str], messages: Sequence[ChatMessage],
    measure: Measure, max_new_tokens: int, k: int = DEFAULT_K,
    max_context_tokens: int = DEFAULT_MAX_CONTEXT_TOKENS,
) -> Augmented:
    """Search ``roots`` for the last user message and fit the best passages."""
    at = last_user_index(messages)
    if at is None:
        return Augmented(list(messages))
    hits = index.search(messages[at].content, roots, k=k)
    return fit_context(messages, hits, measure, max_new_tokens, max_context_tokens)


def grounded_question(index: DocumentIndex, retrieval: dict[str, Any],
                      question: str) -> str | None:
    """A grounded question as the model saw it, rebuilt from the chunks a reply's
    provenance names (``Augmented.provenance``), or None when the index no longer has
    them all (a file changed and was re-indexed, the cache was rebuilt). Replies written
    since the text itself is recorded (``retrieval["user_message"]``) do not need this."""
    hits = []
    for chunk_id in retrieval.get("chunks") or []:
        hit = index.chunk(int(chunk_id)) if isinstance(chunk_id, int) else None
        if hit is None:
            return None
        hits.append(hit)
    return with_context(question, hits) if hits else None
