"""Turning a conversation into prompt token ids, within the model's context budget.

Models with a chat template use it (transformers renders templates in a sandboxed
Jinja environment). Models without one (the GPT-2 family) get a plain transcript with
stop strings, and ``raw`` mode feeds the text as-is for completion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from slmchat.errors import InvalidParameterError, first_line

Role = Literal["system", "user", "assistant"]
PromptMode = Literal["chat", "raw"]

TRANSCRIPT_NAMES = {"system": "System", "user": "User", "assistant": "Assistant"}
TRANSCRIPT_STOPS = ("\nUser:", "\nSystem:")


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class Prompt:
    input_ids: list[int]
    text: str
    prompt_tokens: int
    context_length: int
    dropped_messages: int  # oldest turns left out to fit the context
    truncated: bool  # the newest message itself had to be cut from the left
    stop: tuple[str, ...]
    format: Literal["template", "transcript", "raw"]


def _transcript(messages: Sequence[ChatMessage], continue_last: bool) -> str:
    lines = [f"{TRANSCRIPT_NAMES[m.role]}: {m.content}" for m in messages]
    text = "\n".join(lines)
    if continue_last:
        return text
    return text + "\nAssistant:"


def render(
    tokenizer: Any, messages: Sequence[ChatMessage], mode: PromptMode = "chat",
    continue_last: bool = False,
) -> tuple[str, str]:
    """Render messages to text. Returns (text, format).

    ``continue_last``: the last message is a partial assistant reply to extend.
    """
    if mode == "raw":
        return "".join(m.content for m in messages if m.role != "system"), "raw"
    if getattr(tokenizer, "chat_template", None):
        dicts = [{"role": m.role, "content": m.content} for m in messages]
        try:
            text = tokenizer.apply_chat_template(
                dicts, tokenize=False, add_generation_prompt=not continue_last,
                continue_final_message=continue_last,
            )
        except Exception as exc:  # jinja2 TemplateError / SecurityError, template bugs
            raise InvalidParameterError(
                f"the model's chat template failed ({type(exc).__name__}: "
                f"{first_line(exc, default='')[:160]}); "
                "use --raw, or fix chat_template in the model folder") from exc
        return str(text), "template"
    return _transcript(messages, continue_last), "transcript"


def _encode(tokenizer: Any, text: str, fmt: str) -> list[int]:
    # Templates already contain the special tokens they need.
    add_special = fmt != "template"
    ids = tokenizer(text, add_special_tokens=add_special)["input_ids"]
    return list(ids)


def build_prompt(
    tokenizer: Any,
    messages: Sequence[ChatMessage],
    context_length: int,
    max_new_tokens: int,
    mode: PromptMode = "chat",
    continue_last: bool = False,
) -> Prompt:
    """Keep the system prompt and the newest turns that fit ``context - max_new_tokens``."""
    if not messages:
        raise InvalidParameterError("nothing to send: the conversation is empty")
    if max_new_tokens >= context_length:
        raise InvalidParameterError(
            f"max_new_tokens ({max_new_tokens}) must be below the model's context "
            f"length ({context_length})"
        )
    budget = context_length - max_new_tokens
    system = [m for m in messages if m.role == "system"][:1]
    turns = [m for m in messages if m.role != "system"]
    dropped = 0
    while True:
        text, fmt = render(tokenizer, system + turns, mode, continue_last)
        ids = _encode(tokenizer, text, fmt)
        if len(ids) <= budget or len(turns) <= 1:
            break
        # Drop the oldest turn; keep user/assistant pairs aligned where possible.
        turns = turns[1:]
        dropped += 1
        if turns and turns[0].role == "assistant" and len(turns) > 1:
            turns = turns[1:]
            dropped += 1
    truncated = False
    if len(ids) > budget:
        # Even the newest message alone is too long: keep its end (most recent text).
        ids = ids[-budget:]
        truncated = True
        text = tokenizer.decode(ids)
    stop = TRANSCRIPT_STOPS if fmt == "transcript" else ()
    return Prompt(
        input_ids=ids, text=text, prompt_tokens=len(ids), context_length=context_length,
        dropped_messages=dropped, truncated=truncated, stop=stop, format=fmt,  # type: ignore[arg-type]
    )
