"""One chat message: a header line (role, status, stats) and the text.

Assistant replies are Markdown (code blocks are syntax-highlighted by Textual). While a
reply streams, deltas collect in ``_pending`` and a short timer hands them to a
``MarkdownStream`` in one piece, so the document is appended to, never re-parsed whole.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.timer import Timer
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownStream

from slmchat.engine.store.store import StoredMessage

STATUS_NOTES = {
    "done": "",
    "streaming": "…",
    "length": "hit the token limit — Ctrl+G continues",
    "stopped": "stopped",
    "interrupted": "interrupted (app closed mid-reply)",
    "error": "error",
    "waiting": "waiting for the model to load…",
}
ROLE_NAMES = {"user": "You", "assistant": "Assistant", "system": "System"}
FLUSH_INTERVAL = 0.05  # seconds between Markdown appends while streaming


def stats_line(provenance: dict[str, Any] | None) -> str:
    if not provenance:
        return ""
    parts = []
    if provenance.get("new_tokens") is not None:
        parts.append(f"{provenance['new_tokens']} tok")
    if provenance.get("decode_tps"):
        parts.append(f"{provenance['decode_tps']:.1f} tok/s")
    if provenance.get("ttft_s") is not None:
        parts.append(f"TTFT {provenance['ttft_s']:.2f}s")
    if provenance.get("seed") is not None:
        parts.append(f"seed {provenance['seed']}")
    return " · ".join(parts)


class MessageView(Vertical):
    """A message in the chat log. ``msg_id`` is its row in the store (0 = not stored)."""

    def __init__(
        self, role: str, content: str, status: str = "done", msg_id: int = 0,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(classes=f"message -{role}")
        self.role = role
        self.content = content
        self.status = status
        self.msg_id = msg_id
        self.provenance = provenance
        self._pending: list[str] = []
        self._stream: MarkdownStream | None = None
        self._timer: Timer | None = None
        self._continued = False
        self.branch: tuple[int, int] | None = None  # (n, of) when it has siblings

    @classmethod
    def from_stored(cls, msg: StoredMessage) -> MessageView:
        return cls(msg.role, msg.content, msg.status, msg.id, msg.provenance)

    def compose(self) -> ComposeResult:
        yield Static(self._header(), classes="message-header")
        if self.role == "assistant":
            yield Markdown(self.content, classes="message-body")
        else:
            yield Static(Text(self.content), classes="message-body")

    def _header(self) -> Text:
        text = Text(ROLE_NAMES.get(self.role, self.role), style="bold")
        if self.branch is not None:
            text.append(f"  ‹ {self.branch[0]}/{self.branch[1]} ›", style="bold cyan")
        note = STATUS_NOTES.get(self.status, self.status)
        if note:
            style = "italic red" if self.status in ("error", "stopped", "interrupted") else "italic"
            text.append(f"  {note}", style=style)
        if self.role == "assistant" and self.status != "streaming":
            stats = stats_line(self.provenance)
            if stats:
                text.append(f"  {stats}", style="dim")
            if self.provenance and self.provenance.get("error"):
                text.append(f"  {self.provenance['error']}", style="red")
        return text

    def set_status(self, status: str, provenance: dict[str, Any] | None = None) -> None:
        self.status = status
        if provenance is not None:
            self.provenance = provenance
        self.set_class(status in ("stopped", "error", "interrupted"), "-incomplete")
        if self.is_mounted:
            self.query_one(".message-header", Static).update(self._header())

    def set_branch(self, branch: tuple[int, int] | None) -> None:
        """Show "‹ n/of ›" in the header (the message has siblings), or nothing."""
        if branch != self.branch:
            self.branch = branch
            if self.is_mounted:
                self.query_one(".message-header", Static).update(self._header())

    def on_mount(self) -> None:
        self.set_class(self.status in ("stopped", "error", "interrupted"), "-incomplete")

    # --- streaming ---

    def start_stream(self) -> None:
        self.set_status("streaming")
        self._continued = bool(self.content)
        self._stream = Markdown.get_stream(self.query_one(Markdown))
        self._timer = self.set_interval(FLUSH_INTERVAL, self._flush)

    def append(self, text: str) -> None:
        self.content += text
        self._pending.append(text)

    async def _flush(self) -> None:
        if self._pending and self._stream is not None:
            text = "".join(self._pending)
            self._pending.clear()
            await self._stream.write(text)

    async def finish(self, status: str, provenance: dict[str, Any] | None) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        await self._flush()
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
            if self._continued:
                # A continued reply may close a construct (e.g. a code fence) opened in
                # the part written before; appends don't re-parse it, so parse once here.
                await self.query_one(Markdown).update(self.content)
        self.set_status(status, provenance)

    @property
    def streaming(self) -> bool:
        return self._stream is not None
