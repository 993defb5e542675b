"""Conversation list with full-text search (FTS5 in the store)."""

from __future__ import annotations

import re
import time
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, Label, ListItem, ListView

from slmchat.engine.store.store import Conversation, SearchHit, Store
from slmchat.i18n import localize_bindings, t


def highlight_snippet(snippet: str) -> Text:
    """The store marks matches as [term]; show them highlighted instead of bracketed."""
    text = Text(style="dim", no_wrap=True, overflow="ellipsis")
    for i, part in enumerate(re.split(r"\[([^\]\n]*)\]", snippet.replace("\n", " "))):
        text.append(part, style="bold underline" if i % 2 else "")
    return text


def when(timestamp: float, now: float | None = None) -> str:
    """When a conversation was last active, short: "today 14:03", "Nov 28 14:03",
    "Nov 28 2025" (Japanese: "今日 14:03", "11/28 14:03", "2025/11/28")."""
    at, today = time.localtime(timestamp), time.localtime(now)
    if at[:3] == today[:3]:
        return time.strftime(t("sidebar.when.today"), at)
    if at.tm_year == today.tm_year:
        return time.strftime(t("sidebar.when.year"), at)
    return time.strftime(t("sidebar.when.older"), at)


class ConversationItem(ListItem):
    """Title, then the search snippet or when the conversation was last active (two
    chats on the same question differ there)."""

    def __init__(self, conv_id: int, title: str, snippet: str = "",
                 updated_at: float | None = None, msg_id: int = 0) -> None:
        super().__init__(classes="conversation-item")
        self.conv_id = conv_id
        self.msg_id = msg_id  # a search hit's message (0: none, or a title match)
        self.title = title
        self.snippet = snippet
        self.updated_at = updated_at

    def compose(self) -> ComposeResult:
        yield Label(Text(self.title, no_wrap=True, overflow="ellipsis"), classes="conv-title")
        if self.snippet and self.snippet != self.title:
            yield Label(highlight_snippet(self.snippet), classes="conv-snippet")
        elif self.updated_at is not None:
            yield Label(Text(when(self.updated_at), style="dim"), classes="conv-snippet")


class ConversationSidebar(Vertical):
    """Search box over a list of conversations (newest first)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("down", "focus_list", "Results", show=False,  # from the search box
                id="sidebar.results"),
        Binding("f2", "screen.rename_conversation", "Rename", id="sidebar.rename"),
        Binding("delete", "screen.delete_conversation", "Delete", id="sidebar.delete"),
        Binding("f3", "screen.export_conversation", "Export", id="sidebar.export"),
    ]

    class Selected(Message):
        """Open ``conv_id``; from a search hit, on the branch that holds ``msg_id``."""

        def __init__(self, conv_id: int, msg_id: int = 0) -> None:
            super().__init__()
            self.conv_id = conv_id
            self.msg_id = msg_id

    def __init__(self, store: Store, *, id: str | None = None) -> None:
        super().__init__(id=id)
        localize_bindings(self)
        self.store = store
        self.current: int | None = None

    def compose(self) -> ComposeResult:
        yield Input(placeholder=t("sidebar.search"), id="search", compact=True)
        yield ListView(id="conversations")

    def on_mount(self) -> None:
        self.border_title = t("sidebar.title")
        self.reload()

    @property
    def query_text(self) -> str:
        return self.query_one("#search", Input).value.strip()

    def reload(self) -> None:
        """Show all conversations, or the search hits when the search box has text."""
        if self.query_text:
            hits = self.store.search(self.query_text)
            self._show_hits(hits)
        else:
            self._show_conversations(self.store.list_conversations())

    def _show_conversations(self, convs: list[Conversation]) -> None:
        self._fill([ConversationItem(c.id, c.title, updated_at=c.updated_at) for c in convs])

    def _show_hits(self, hits: list[SearchHit]) -> None:
        seen: set[int] = set()
        items = []
        for hit in hits:
            if hit.conversation_id not in seen:  # one row per conversation, best hit
                seen.add(hit.conversation_id)
                items.append(ConversationItem(hit.conversation_id, hit.title, hit.snippet,
                                              msg_id=hit.message_id))
        self._fill(items)

    def _fill(self, items: list[ConversationItem]) -> None:
        lv = self.query_one(ListView)
        lv.clear()
        lv.extend(items)
        # The open conversation stays highlighted in the list; among search hits the first
        # hit is, so that Enter opens it (as the search box's hint says).
        index = None if self.query_text else next(
            (i for i, it in enumerate(items) if it.conv_id == self.current), None)
        if items:
            lv.index = index if index is not None else 0
        self.border_subtitle = t("sidebar.found", n=len(items)) if self.query_text else ""

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.reload()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in the search box opens the first (highlighted) hit."""
        event.stop()
        item = self.query_one(ListView).highlighted_child
        if isinstance(item, ConversationItem):
            self.post_message(self.Selected(item.conv_id, item.msg_id))

    def focus_search(self) -> None:
        self.display = True
        self.query_one("#search", Input).focus()

    def action_focus_list(self) -> None:
        self.query_one(ListView).focus()

    def on_list_view_selected(self, event: ListView.Selected) -> None:
        event.stop()
        item = event.item
        if isinstance(item, ConversationItem):
            self.post_message(self.Selected(item.conv_id, item.msg_id))

    @property
    def highlighted_id(self) -> int | None:
        item = self.query_one(ListView).highlighted_child
        return item.conv_id if isinstance(item, ConversationItem) else None
