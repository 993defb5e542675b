"""One chat message: a header line (role, status, stats) and the text.

Assistant replies are Markdown (code blocks are syntax-highlighted by Textual). While a
reply streams, deltas collect in ``_pending`` and a short timer hands them to a
``MarkdownStream`` in one piece, so the document is appended to, never re-parsed whole.

Accepted draft tokens (speculative decoding) can be tinted ([ui] tint_accepted_drafts):
Markdown cannot colour a span of its source, so a reply with accepted drafts is then shown
as plain text (no Markdown formatting) in a ``Static`` beside the hidden Markdown, its
accepted spans with a theme-coloured background. The spans live on the view, for this
session only (the store does not keep them): a reply read back from the store, one without
accepted drafts, and every reply with tinting off stay Markdown.
"""

from __future__ import annotations

from typing import Any

from markdown_it import MarkdownIt
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content, Span
from textual.timer import Timer
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownStream

from slmchat.engine.store.provenance import Provenance
from slmchat.engine.store.store import StoredMessage
from slmchat.i18n import has, t
from slmchat.tui.widgets.citations import Citations, citations_for
from slmchat.tui.widgets.fitted_line import FittedLine, Part, part
from slmchat.tui.widgets.reasoning_block import ReasoningBlock
from slmchat.tui.widgets.tool_call import ToolCallBlock

STATUS_MARKS = {"done": "", "streaming": "…"}  # other statuses: t("status.<status>")


def status_note(status: str) -> str:
    """What the header says about a reply's state ("" when it is done)."""
    if status in STATUS_MARKS:
        return STATUS_MARKS[status]
    return t(f"status.{status}") if has(f"status.{status}") else status


def role_name(role: str) -> str:
    return t(f"role.{role}") if has(f"role.{role}") else role


def _hard_breaks(state: Any) -> None:
    """Every line break inside a paragraph is a hard break (code blocks are untouched)."""
    for token in state.tokens:
        for child in token.children or ():
            if child.type == "softbreak":
                child.type = "hardbreak"


def reply_parser() -> MarkdownIt:
    """Textual's parser, but a model's line breaks stay line breaks on screen (a poem,
    an address, a list written without Markdown markers), as in the exported Markdown."""
    md = MarkdownIt("gfm-like")
    md.core.ruler.push("slmchat_hard_breaks", _hard_breaks)
    return md


# Seconds between Markdown appends while streaming: 10 a second reads as smooth, and each
# append parses and lays out the growing block on the UI thread, which takes the GIL from
# the decode loop; at 20 a second the chat decoded ~15 % slower (benchmarks/bench_app.py).
FLUSH_INTERVAL = 0.1

# Accepted draft text: a muted theme colour behind the text, readable in light and dark
# themes alike (a style of theme variables: a theme change re-colours it).
TINT_STYLE = "on $success-muted"


def stats_parts(provenance: dict[str, Any] | None) -> list[Part]:
    """The reply's figures, most telling first in priority (tok/s, then length, TTFT,
    seed); a narrow column drops whole figures from the end of that list."""
    if not provenance:
        return []
    prov = Provenance.from_dict(provenance)
    parts: list[Part] = []
    if prov.new_tokens is not None:
        parts.append(part(t("stats.tokens", n=prov.new_tokens), 2, "dim"))
    if prov.decode_tps:
        parts.append(part(t("stats.tps", tps=prov.decode_tps), 1, "dim"))
    if prov.ttft_s is not None:
        parts.append(part(t("stats.ttft", s=prov.ttft_s), 3, "dim"))
    greedy = prov.greedy
    if prov.seed is not None and not greedy:  # a seed changes nothing then
        parts.append(part(t("stats.seed", seed=prov.seed), 4, "dim"))
    elif greedy:
        parts.append(part(t("stats.greedy"), 4, "dim"))
    return [(Text("  " if k == 0 else " · ", style="dim") + text, p)
            for k, (text, p) in enumerate(parts)]


def stats_line(provenance: dict[str, Any] | None) -> str:
    return "".join(text.plain for text, _ in stats_parts(provenance)).strip()


def curation_note(provenance: dict[str, Any] | None) -> str:
    """"good" / "bad" / "edited" marks a user gave the reply (for training)."""
    prov = Provenance.from_dict(provenance)
    marks = []
    if prov.rating is not None:
        marks.append(t(f"curation.mark.{prov.rating}"))
    if prov.original is not None:
        marks.append(t("curation.edited"))
    return f"  [{', '.join(marks)}]" if marks else ""


class MessageView(Vertical):
    """A message in the chat log. ``msg_id`` is its row in the store (0 = not stored)."""

    def __init__(
        self, role: str, content: str, status: str = "done", msg_id: int = 0,
        provenance: dict[str, Any] | None = None, reasoning: str = "",
    ) -> None:
        super().__init__(classes=f"message -{role}")
        self.role = role
        self.content = content
        self.reasoning = reasoning  # the reply's thinking, shown folded above the answer
        self._pending_reasoning: list[str] = []
        self._reasoning_tokens = Provenance.from_dict(provenance).reasoning_tokens or 0
        self.status = status
        self.msg_id = msg_id
        self.provenance = provenance
        self._pending: list[str] = []
        self._stream: MarkdownStream | None = None
        self._timer: Timer | None = None
        self._continued = False
        self.branch: tuple[int, int] | None = None  # (n, of) when it has siblings
        self.parent_id: int | None = None  # the message it follows (its siblings share it)
        self.tool_call: dict[str, Any] | None = None  # a reply that called a tool
        # [start, end) ranges of ``content`` that accepted draft tokens wrote (this session)
        self.draft_spans: list[tuple[int, int]] = []
        self.tint_drafts = False  # set by the log ([ui] tint_accepted_drafts)
        self._markdown_stale = False  # the hidden Markdown lags ``content`` (tinted meanwhile)

    @classmethod
    def from_stored(cls, msg: StoredMessage) -> MessageView:
        view = cls(msg.role, msg.content, msg.status, msg.id, msg.provenance, msg.reasoning)
        view.parent_id = msg.parent_id
        view.tool_call = msg.tool_call
        return view

    def compose(self) -> ComposeResult:
        yield FittedLine(self._header(), classes="message-header")
        if self.role == "assistant":
            if self.reasoning:
                yield ReasoningBlock(self.reasoning, self._reasoning_tokens)
            body = Markdown(self.content, classes="message-body", parser_factory=reply_parser)
            body.display = not (self.tool_call and not self.content)
            yield body
            tinted = Static("", classes="message-body message-tinted")
            tinted.display = False
            yield tinted
            if self.tool_call:
                yield ToolCallBlock(self.tool_call)
            if (cites := citations_for(self.provenance)) is not None:
                yield cites
        else:
            yield Static(Text(self.content), classes="message-body")

    def _header(self) -> list[Part]:
        parts = [part(role_name(self.role), 0, "bold")]
        if self.branch is not None:
            parts.append(part(f"  ‹ {self.branch[0]}/{self.branch[1]} ›", 0, "bold cyan"))
        note = status_note(self.status)
        if note:
            style = "italic red" if self.status in ("error", "stopped", "interrupted") else "italic"
            parts.append(part(f"  {note}", 0, style))
        if self.role == "assistant" and self.status != "streaming":
            parts += stats_parts(self.provenance)
            if error := Provenance.from_dict(self.provenance).error:
                parts.append(part(f"  {error}", 0, "red"))
            if note := curation_note(self.provenance):
                parts.append(part(note, 1, "bold"))
        return parts

    def set_status(self, status: str, provenance: dict[str, Any] | None = None) -> None:
        self.status = status
        if provenance is not None:
            self.provenance = provenance
        self.set_class(status in ("stopped", "error", "interrupted"), "-incomplete")
        if self.is_mounted:
            self.query_one(".message-header", FittedLine).set_parts(self._header())

    def set_branch(self, branch: tuple[int, int] | None) -> None:
        """Show "‹ n/of ›" in the header (the message has siblings), or nothing."""
        if branch != self.branch:
            self.branch = branch
            if self.is_mounted:
                self.query_one(".message-header", FittedLine).set_parts(self._header())

    def on_mount(self) -> None:
        self.set_class(self.status in ("stopped", "error", "interrupted"), "-incomplete")

    # --- streaming ---

    def start_stream(self) -> None:
        self.set_status("streaming")
        self._continued = bool(self.content)
        self._stream = Markdown.get_stream(self.query_one(Markdown))
        self._timer = self.set_interval(FLUSH_INTERVAL, self._flush)

    def append(self, text: str, accepted_draft: bool = False) -> None:
        """Add reply text; ``accepted_draft``: accepted draft tokens wrote it."""
        if accepted_draft and text:
            start, end = len(self.content), len(self.content) + len(text)
            if self.draft_spans and self.draft_spans[-1][1] == start:
                start = self.draft_spans.pop()[0]
            self.draft_spans.append((start, end))
        self.content += text
        self._pending.append(text)

    # --- tinted accepted drafts ---

    @property
    def tinted(self) -> bool:
        """Whether the body shows as tinted plain text (not Markdown) now."""
        return self.tint_drafts and bool(self.draft_spans) and self.role == "assistant" \
            and not self.tool_call

    def tinted_content(self) -> Content:
        """The reply as plain text, its accepted draft spans tinted."""
        return Content(self.content).add_spans(
            [Span(start, end, TINT_STYLE) for start, end in self.draft_spans])

    async def set_tint(self, on: bool) -> None:
        """Tint accepted drafts (a reply that had some) or show Markdown again."""
        self.tint_drafts = on
        await self._show_body()

    async def _show_body(self) -> None:
        """Show the tinted text or the Markdown, whichever applies, up to date."""
        if self.role != "assistant" or not self.is_mounted:
            return
        markdown = self.query_one(Markdown)
        tinted = self.query_one(".message-tinted", Static)
        if self.tinted:
            tinted.update(self.tinted_content())
            tinted.display, markdown.display = True, False
            return
        if tinted.display:
            tinted.display = False
            tinted.update("")
            markdown.display = not (self.tool_call and not self.content)
        if self._markdown_stale:  # parse the whole reply once, then append again
            self._markdown_stale = False
            self._pending.clear()  # already in ``content``
            if self._stream is not None:
                await self._stream.stop()
                await markdown.update(self.content)
                self._stream = Markdown.get_stream(markdown)
            else:
                await markdown.update(self.content)

    def append_reasoning(self, text: str, tokens: int) -> None:
        self.reasoning += text
        self._pending_reasoning.append(text)
        self._reasoning_tokens = max(self._reasoning_tokens, tokens)

    @property
    def reasoning_block(self) -> ReasoningBlock | None:
        blocks = self.query_children(ReasoningBlock)
        return blocks.first() if blocks else None

    def toggle_reasoning(self) -> bool:
        """Fold or unfold the reasoning; False when the reply has none."""
        block = self.reasoning_block
        if block is None:
            return False
        block.toggle()
        return True

    async def _flush_reasoning(self) -> None:
        block = self.reasoning_block
        if self._pending_reasoning:
            text = "".join(self._pending_reasoning)
            self._pending_reasoning.clear()
            if block is None:
                block = ReasoningBlock(streaming=True)
                await self.mount(block, before=self.query_one(Markdown))
            block.append(text, self._reasoning_tokens)
        if block is not None and block.streaming and (self._pending or not self.streaming):
            block.finish(self._reasoning_tokens)  # the answer began: the thinking is over

    async def _flush(self) -> None:
        await self._flush_reasoning()
        if self._pending and self._stream is not None:
            text = "".join(self._pending)
            self._pending.clear()
            if self.tinted or self._markdown_stale:
                # Tinted: the Markdown (hidden) is parsed once, if tinting is turned off.
                self._markdown_stale = True
                await self._show_body()
            else:
                await self._stream.write(text)

    async def finish(self, status: str, provenance: dict[str, Any] | None) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if reasoning_tokens := Provenance.from_dict(provenance).reasoning_tokens:
            self._reasoning_tokens = reasoning_tokens
        await self._flush()
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
            if self._continued and not self._markdown_stale:
                # A continued reply may close a construct (e.g. a code fence) opened in
                # the part written before; appends don't re-parse it, so parse once here.
                await self.query_one(Markdown).update(self.content)
            await self._show_body()
        self.set_status(status, provenance)
        if (block := self.reasoning_block) is not None:
            block.finish(self._reasoning_tokens)
        if not self.query(Citations) and (cites := citations_for(self.provenance)) is not None:
            await self.mount(cites)

    async def replace_text(self, text: str, provenance: dict[str, Any] | None) -> None:
        """Show an edited (preferred) reply in place of the model's text."""
        self.content = text
        self.draft_spans = []  # they no longer match the text
        self._markdown_stale = False
        await self.query_one(Markdown).update(text)
        await self._show_body()
        self.set_status(self.status, provenance)

    async def show_tool_call(self, call: dict[str, Any]) -> None:
        """The reply is a tool call: its block instead of the call's raw text."""
        self.tool_call = call
        blocks = self.query(ToolCallBlock)
        if blocks:
            blocks.first().update_call(call)
            return
        self.content = ""
        self.draft_spans = []
        self._markdown_stale = False
        await self._show_body()
        body = self.query_one(Markdown)
        await body.update("")
        body.display = False
        await self.mount(ToolCallBlock(call), after=body)

    @property
    def streaming(self) -> bool:
        return self._stream is not None
