"""Reasoning ("thinking") output, told apart from the answer while the reply streams.

Reasoning models (Qwen3, SmolLM3, DeepSeek-R1 distills) write their reasoning first,
between markers: ``<think>…</think>`` for most, other pairs for a few templates. The chat
template says which markers the model uses (it strips them from earlier turns), and a
template with an ``enable_thinking`` switch (Qwen3, SmolLM3) leaves the reasoning out when
it is rendered with ``enable_thinking=False``.

This is a post-processing layer over the decode loop's text stream (decode.py is not
changed): ``ReasoningSplitter`` reads the text deltas and returns (reasoning, answer)
deltas, holding back only what could still be part of a marker; ``separate`` applies it
to a stream of ``GenerationChunk``s. Only a reply that *starts* with the opening marker
(after white space), or whose prompt ends inside an open block (templates that open
``<think>`` themselves, or a cut reply being continued), has reasoning: a marker in the
middle of an answer is text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # prompting reads the markers without importing the decode loop
    from slmchat.engine.generation.decode import GenerationChunk


@dataclass(frozen=True)
class Markers:
    open: str
    close: str


DEFAULT_MARKERS = Markers("<think>", "</think>")
# Pairs that chat templates of reasoning models use; the first found in a template wins.
KNOWN_MARKERS: tuple[Markers, ...] = (
    DEFAULT_MARKERS,
    Markers("<thinking>", "</thinking>"),
    Markers("<|begin_of_thought|>", "<|end_of_thought|>"),
    Markers("<|START_THINKING|>", "<|END_THINKING|>"),
    Markers("<reasoning>", "</reasoning>"),
    Markers("◁think▷", "◁/think▷"),
    Markers("[THINK]", "[/THINK]"),
)
_SWITCH = re.compile(r"\benable_thinking\b")
# Leading white space waits for the opening marker at most this long: a reply of newlines
# (a small model's loop) streams as it did without this layer.
LEAD_LIMIT = 16


def template_source(tokenizer: Any) -> str:
    """The chat template text of ``tokenizer`` ("" without one; named templates joined)."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        return "\n".join(str(v) for v in template.values())
    return template if isinstance(template, str) else ""


def markers_in(template: str) -> Markers:
    """The reasoning markers ``template`` names, else ``<think>…</think>``."""
    for pair in KNOWN_MARKERS:
        if pair.open in template and pair.close in template:
            return pair
    return DEFAULT_MARKERS


def has_switch(template: str) -> bool:
    """Whether the template reads ``enable_thinking`` (Qwen3, SmolLM3 and their kind)."""
    return bool(_SWITCH.search(template))


def thinks(template: str) -> bool:
    """Whether a chat template is a thinking model's: it has the switch, or names a pair
    of reasoning markers (Ollama's "thinking" capability)."""
    return has_switch(template) or any(p.open in template and p.close in template
                                       for p in KNOWN_MARKERS)


def template_kwargs(template: str, thinking: bool | None) -> dict[str, Any]:
    """Extra chat-template variables: ``enable_thinking`` when asked for and the template
    has the switch; nothing otherwise (a template without it ignores the setting)."""
    if thinking is None or not has_switch(template):
        return {}
    return {"enable_thinking": bool(thinking)}


def opens_inside(prompt_text: str, markers: Markers, continued: str | None = None) -> bool:
    """Whether the reply starts inside a reasoning block: the template's generation prompt
    ends with the opening marker (DeepSeek-R1's), or ``continued`` (the partial reply being
    continued) has an opening marker that is not closed."""
    if continued is not None:
        return continued.rfind(markers.open) > continued.rfind(markers.close)
    return prompt_text.rstrip().endswith(markers.open)


def _partial_tail(text: str, marker: str) -> int:
    """The length of the longest end of ``text`` that is a proper start of ``marker``."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0


State = Literal["start", "reasoning", "after", "answer"]


class ReasoningSplitter:
    """Text deltas in, (reasoning, answer) deltas out; O(marker length) per delta.

    The reasoning loses its surrounding white space (the newline after ``<think>`` and
    before ``</think>``), the answer its leading white space after the block; a reply
    with no block passes through unchanged."""

    def __init__(self, markers: Markers = DEFAULT_MARKERS, inside: bool = False) -> None:
        self.markers = markers
        self.state: State = "reasoning" if inside else "start"
        self.had_reasoning = inside
        self._buf = ""  # held back: a possible marker start, or white space
        # Any reasoning given out yet: until then leading white space is dropped (the
        # newline after <think>); a reply that starts inside a block keeps it (a continued
        # thought goes on after its last word).
        self._said = inside

    @property
    def thinking(self) -> bool:
        """Inside a reasoning block now."""
        return self.state == "reasoning"

    def feed(self, text: str) -> tuple[str, str]:
        if not text:
            return "", ""
        if self.state == "answer":
            return "", text
        self._buf += text
        if self.state == "start":
            return self._start()
        if self.state == "reasoning":
            return self._reasoning()
        return self._after()

    def _start(self) -> tuple[str, str]:
        head = self._buf.lstrip()
        opener = self.markers.open
        if head.startswith(opener):
            self.state, self.had_reasoning = "reasoning", True
            self._buf = head[len(opener):]
            return self._reasoning()
        lead = len(self._buf) - len(head)
        if (not head and lead <= LEAD_LIMIT) or (head and opener.startswith(head)):
            return "", ""  # white space or part of the marker so far: wait
        self.state, out, self._buf = "answer", self._buf, ""
        return "", out

    def _reasoning(self) -> tuple[str, str]:
        close = self.markers.close
        at = self._buf.find(close)
        if at >= 0:
            thought, rest = self._buf[:at].rstrip(), self._buf[at + len(close):]
            self._buf = ""
            self.state = "after"
            said = self._say(thought)
            _, answer = self.feed(rest) if rest else ("", "")
            return said, answer
        keep = _partial_tail(self._buf, close)
        body = self._buf[:len(self._buf) - keep]
        shown = body.rstrip()  # trailing white space waits: it may come before the close
        self._buf = self._buf[len(shown):]
        return self._say(shown), ""

    def _say(self, text: str) -> str:
        if not self._said:
            text = text.lstrip()
        self._said = self._said or bool(text)
        return text

    def _after(self) -> tuple[str, str]:
        rest = self._buf.lstrip()
        self._buf = ""
        if rest:
            self.state = "answer"
        return "", rest

    def flush(self) -> tuple[str, str]:
        """What is still held back when the reply ends: an unclosed block's last text is
        reasoning; a reply that was only white space or part of a marker is answer."""
        held, self._buf = self._buf, ""
        if self.state == "reasoning":
            return self._say(held.rstrip()), ""
        if self.state == "start":
            return "", held
        return "", ""


def split_reasoning(text: str, markers: Markers = DEFAULT_MARKERS,
                    inside: bool = False) -> tuple[str, str]:
    """(reasoning, answer) of a whole reply."""
    splitter = ReasoningSplitter(markers, inside)
    reasoning, answer = splitter.feed(text)
    more_r, more_a = splitter.flush()
    return reasoning + more_r, answer + more_a


def separate(chunks: Iterator[GenerationChunk], markers: Markers = DEFAULT_MARKERS,
             inside: bool = False) -> Iterator[GenerationChunk]:
    """``chunks`` with their text split into ``reasoning`` and ``text`` (the answer).

    ``reasoning_tokens`` counts the tokens of the block: the running count while it is
    open, then fixed where it closed. A chunk left with neither text is dropped, except
    the last one, which is always given out (after a chunk with what was held back)."""
    splitter = ReasoningSplitter(markers, inside)
    reasoning_tokens = 0
    for chunk in chunks:
        if chunk.finish_reason is not None:
            thought, answer = splitter.flush()
            if splitter.thinking:
                reasoning_tokens = chunk.new_tokens
            if thought or answer:
                yield replace(chunk, text=answer, reasoning=thought,
                              reasoning_tokens=reasoning_tokens, finish_reason=None,
                              error=None, warning=None)
            yield replace(chunk, text="", reasoning="", reasoning_tokens=reasoning_tokens)
            return
        was_thinking = splitter.thinking
        thought, answer = splitter.feed(chunk.text)
        if splitter.thinking or was_thinking:
            reasoning_tokens = chunk.new_tokens
        if not thought and answer == chunk.text and reasoning_tokens == chunk.reasoning_tokens:
            yield chunk  # plain answer text: as it came (no copy)
        elif thought or answer:
            yield replace(chunk, text=answer, reasoning=thought, reasoning_tokens=reasoning_tokens)
