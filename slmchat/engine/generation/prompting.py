"""Turning a conversation into prompt token ids, within the model's context budget.

Models with a chat template use it (transformers renders templates in a sandboxed
Jinja environment). Models without one (the GPT-2 family) get a plain transcript with
stop strings, and ``raw`` mode feeds the text as-is for completion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from slmchat.engine.generation.reasoning import template_kwargs, template_source
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
    # remote: the messages as sent (the server applies its own template; runtimes/remote)
    format: Literal["template", "transcript", "raw", "remote"]
    kept: tuple[ChatMessage, ...] = ()  # the messages rendered (system + newest turns)
    # With ``detail`` (the prompt inspector): what each kept message adds in tokens (the
    # template's wrapping included), the generation prompt's share, each token's text,
    # and the tokenizer's special tokens found in ``text``.
    message_tokens: tuple[int, ...] = ()
    generation_prompt_tokens: int = 0
    pieces: tuple[str, ...] = ()
    special_tokens: tuple[str, ...] = ()
    cached_tokens: int = 0  # leading tokens the engine's KV cache already holds


def shared_prefix(cached: Sequence[int], ids: Sequence[int]) -> int:
    """How many leading prompt tokens a KV cache holding ``cached`` would reuse (the
    decode loop always feeds at least one new token)."""
    n, limit = 0, min(len(cached), len(ids) - 1)
    while n < limit and cached[n] == ids[n]:
        n += 1
    return n


def _transcript(messages: Sequence[ChatMessage], continue_last: bool) -> str:
    lines = [f"{TRANSCRIPT_NAMES[m.role]}: {m.content}" for m in messages]
    text = "\n".join(lines)
    if continue_last:
        return text
    return text + "\nAssistant:"


def render(
    tokenizer: Any, messages: Sequence[ChatMessage], mode: PromptMode = "chat",
    continue_last: bool = False, generation_prompt: bool | None = None,
    thinking: bool | None = None,
) -> tuple[str, str]:
    """Render messages to text. Returns (text, format).

    ``continue_last``: the last message is a partial assistant reply to extend.
    ``generation_prompt``: False renders the messages alone, without the assistant
    header a reply starts from (default: add it unless continuing).
    ``thinking``: ``enable_thinking`` for a template with that switch (reasoning.py);
    None leaves the template's default, and a template without the switch ignores it.
    """
    gen = (not continue_last) if generation_prompt is None else generation_prompt
    if mode == "raw":
        return "".join(m.content for m in messages if m.role != "system"), "raw"
    if getattr(tokenizer, "chat_template", None):
        dicts = [{"role": m.role, "content": m.content} for m in messages]
        extra = template_kwargs(template_source(tokenizer), thinking)
        try:
            text = tokenizer.apply_chat_template(
                dicts, tokenize=False, add_generation_prompt=gen,
                continue_final_message=continue_last, **extra,
            )
        except Exception as exc:  # jinja2 TemplateError / SecurityError, template bugs
            raise InvalidParameterError(
                f"the model's chat template failed ({type(exc).__name__}: "
                f"{first_line(exc, default='')[:160]}); "
                "use --raw, or fix chat_template in the model folder") from exc
        return str(text), "template"
    return _transcript(messages, not gen), "transcript"


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
    detail: bool = False,
    thinking: bool | None = None,
) -> Prompt:
    """Keep the system prompt and the newest turns that fit ``context - max_new_tokens``.

    ``detail``: also count tokens per message and split the ids into token texts (the
    prompt inspector; a few more renders, so replies leave it off). ``thinking``: see
    ``render``."""
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
    # Drop the oldest turns until the rest fits, keeping user/assistant pairs aligned
    # where possible: these are the first turns kept, from none dropped to the last turn.
    starts = [0]
    while len(turns) - starts[-1] > 1:
        s = starts[-1] + 1
        if turns[s].role == "assistant" and len(turns) - s > 1:
            s += 1
        starts.append(s)

    def attempt(i: int) -> tuple[str, str, list[int]]:
        text, fmt = render(tokenizer, system + turns[starts[i]:], mode, continue_last,
                           thinking=thinking)
        return text, fmt, _encode(tokenizer, text, fmt)

    # The first start that fits (fewer turns never render longer), found by bisection:
    # a 100,000-message request renders ~17 times, not 100,000 times.
    tried = {0: attempt(0)}
    fits = len(tried[0][2]) <= budget or len(starts) == 1
    lo, hi = (0, 0) if fits else (1, len(starts) - 1)
    while lo < hi:
        mid = (lo + hi) // 2
        tried[mid] = attempt(mid)
        if len(tried[mid][2]) <= budget:
            hi = mid
        else:
            lo = mid + 1
    text, fmt, ids = tried[lo] if lo in tried else attempt(lo)
    dropped = starts[lo]
    turns = turns[dropped:]
    truncated = False
    if len(ids) > budget:
        # Even the newest message alone is too long: keep its end (most recent text).
        ids = ids[-budget:]
        truncated = True
        text = tokenizer.decode(ids)
    stop = TRANSCRIPT_STOPS if fmt == "transcript" else ()
    prompt = Prompt(
        input_ids=ids, text=text, prompt_tokens=len(ids), context_length=context_length,
        dropped_messages=dropped, truncated=truncated, stop=stop, format=fmt,  # type: ignore[arg-type]
        kept=tuple(system + turns),
    )
    return _with_detail(tokenizer, prompt, mode, continue_last, thinking) if detail else prompt


def _message_tokens(
    tokenizer: Any, prompt: Prompt, mode: PromptMode, continue_last: bool,
    thinking: bool | None = None,
) -> tuple[tuple[int, ...], int]:
    """Tokens each kept message adds: the prompt rendered up to message i, minus up to
    i-1 (so the template's wrapping counts with its message), and the generation
    prompt's share. Tokens can merge across a boundary, so a count may be off by one."""
    kept = prompt.kept
    if mode == "raw":
        return tuple(len(_encode(tokenizer, m.content, "raw")) if m.role != "system" else 0
                     for m in kept), 0
    counts: list[int] = []
    before = 0
    for i in range(1, len(kept) + 1):
        last = i == len(kept)
        text, fmt = render(tokenizer, kept[:i], mode, continue_last=continue_last and last,
                           generation_prompt=False, thinking=thinking)
        n = len(_encode(tokenizer, text, fmt))
        counts.append(max(0, n - before))
        before = n
    return tuple(counts), max(0, prompt.prompt_tokens - before)


def _with_detail(tokenizer: Any, prompt: Prompt, mode: PromptMode,
                 continue_last: bool, thinking: bool | None = None) -> Prompt:
    try:
        counts, gen = _message_tokens(tokenizer, prompt, mode, continue_last, thinking)
    except InvalidParameterError:  # a template that refuses a partial conversation
        counts = tuple(len(_encode(tokenizer, m.content, "raw")) for m in prompt.kept)
        gen = 0
    pieces = tuple(str(tokenizer.decode([i], skip_special_tokens=False))
                   for i in prompt.input_ids)
    specials: set[str] = set(getattr(tokenizer, "all_special_tokens", None) or ())
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    specials.update(str(t.content) for t in added.values() if getattr(t, "special", False))
    found = tuple(sorted((t for t in specials if t and t in prompt.text), key=len,
                         reverse=True))
    return replace(prompt, message_tokens=counts, generation_prompt_tokens=gen,
                   pieces=pieces, special_tokens=found)
