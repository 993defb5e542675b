"""The scrolling list of messages, with keyboard selection of one message.

The log is anchored to the bottom: it follows a streaming reply only while the user
has not scrolled up (Textual releases the anchor when the user scrolls away).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Static

from slmchat.i18n import localize_bindings, t
from slmchat.tui.widgets.message_view import MessageView

if TYPE_CHECKING:
    from slmchat.engine.store.store import ModelChange


class ModelDivider(Static):
    """"── model changed to … ──" where the conversation's model changed."""

    DEFAULT_CSS = """
    ModelDivider { height: auto; margin: 1 0 0 0; color: $text-muted; text-align: center;
                   text-style: italic; }
    """

    def __init__(self, label: str) -> None:
        # Text, not markup: a fine-tuned model's name has "[lora on …]" in it.
        text = t("switcher.divider", label=label)
        super().__init__(Text(f"── {text} ──"), classes="model-divider")
        self.label = label


class ChatLog(VerticalScroll, can_focus=True):
    """Messages of the open conversation. Focus it (Ctrl+L) to select a message."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "select(-1)", "Prev message", show=False, id="log.previous"),
        Binding("down,j", "select(1)", "Next message", show=False, id="log.next"),
        Binding("home", "select_edge(0)", "First", show=False, id="log.first"),
        Binding("end", "select_edge(-1)", "Last", show=False, id="log.last"),
        Binding("c,y", "copy_selected", "Copy", id="log.copy"),
        Binding("e", "edit_selected", "Edit & resend", id="log.edit"),
        Binding("i", "inspect_selected", "Inspect prompt", id="log.inspect"),
        Binding("left,h", "branch(-1)", "‹ Branch", show=False, id="log.branch_prev"),
        Binding("right,l", "branch(1)", "Branch ›", show=False, id="log.branch_next"),
        Binding("t", "toggle_reasoning", "Thinking", show=False, id="log.reasoning"),
    ]

    selected: reactive[int] = reactive(-1, init=False)

    class CopyRequested(Message):
        def __init__(self, view: MessageView) -> None:
            super().__init__()
            self.view = view

    class EditRequested(Message):
        def __init__(self, view: MessageView) -> None:
            super().__init__()
            self.view = view

    class InspectRequested(Message):
        """Show the prompt of the selected reply (prompt_inspector.py)."""

        def __init__(self, view: MessageView) -> None:
            super().__init__()
            self.view = view

    class BranchRequested(Message):
        """Show the previous (-1) or next (+1) sibling of the selected message."""

        def __init__(self, view: MessageView, step: int) -> None:
            super().__init__()
            self.view = view
            self.step = step

    def __init__(self, *children: Any, **kwargs: Any) -> None:
        super().__init__(*children, **kwargs)
        localize_bindings(self)
        self.tint_drafts = False  # [ui] tint_accepted_drafts, given to every view added

    async def set_tint(self, on: bool) -> None:
        """Tint accepted draft tokens in the replies shown (and in those added later)."""
        self.tint_drafts = on
        for view in self.views():
            await view.set_tint(on)

    def on_mount(self) -> None:
        self.anchor()
        self.show_empty()

    def show_empty(self) -> None:
        if not self.views():
            self.mount(Static(t("log.empty"), classes="empty-hint"))

    def views(self) -> list[MessageView]:
        return list(self.query_children(MessageView))

    async def add(self, view: MessageView) -> None:
        view.tint_drafts = self.tint_drafts
        await self.query_children(".empty-hint").remove()
        await self.mount(view)

    async def clear(self) -> None:
        self.selected = -1
        await self.remove_children()
        self.show_empty()

    async def remove_from(self, view: MessageView) -> None:
        """Remove ``view`` and every message after it."""
        views = self.views()
        if view in views:
            await self.remove_children(views[views.index(view):])
        self.selected = -1

    def view_for(self, msg_id: int) -> MessageView | None:
        for view in self.views():
            if view.msg_id == msg_id:
                return view
        return None

    def mark_branches(self, positions: dict[int, tuple[int, int]]) -> None:
        """Put "‹ n/of ›" on every shown message that has siblings (``positions``:
        message id -> its place among them, from ``Store.branch_positions``)."""
        for view in self.views():
            view.set_branch(positions.get(view.msg_id) if view.msg_id else None)

    async def add_divider(self, label: str) -> None:
        """The model changed now: a divider at the end."""
        await self.query_children(".empty-hint").remove()
        await self.mount(ModelDivider(label))
        self.scroll_end(animate=False)

    async def place_dividers(self, changes: list[ModelChange]) -> None:
        """Each stored model change after the last shown message written before it."""
        views = [v for v in self.views() if v.msg_id]
        last_at: dict[int, Any] = {}
        for change in changes:
            anchor = None
            for view in views:
                if change.after_id is not None and view.msg_id <= change.after_id:
                    anchor = view
            divider = ModelDivider(change.label)
            if anchor is None:
                if views:
                    await self.mount(divider, before=last_at.get(0, views[0]))
                else:
                    await self.mount(divider)
                continue
            await self.mount(divider, after=last_at.get(anchor.msg_id, anchor))
            last_at[anchor.msg_id] = divider

    def reveal(self, msg_id: int) -> None:
        """Mark the message a search found and scroll to it (once laid out)."""
        view = self.view_for(msg_id)
        if view is None:
            return
        view.add_class("-hit")

        def scroll() -> None:
            self.release_anchor()  # or the next layout pulls it back to the end
            self.scroll_to_widget(view, animate=False, top=True)

        self.call_after_refresh(scroll)

    def clear_hits(self) -> None:
        for view in self.query(".-hit"):
            view.remove_class("-hit")

    @property
    def selected_view(self) -> MessageView | None:
        views = self.views()
        return views[self.selected] if 0 <= self.selected < len(views) else None

    def watch_selected(self, old: int, new: int) -> None:
        for i, view in enumerate(self.views()):
            view.set_class(i == new, "-selected")
        selected = self.selected_view
        if selected is not None:
            self.scroll_to_widget(selected, animate=False)

    def on_focus(self) -> None:
        if self.selected_view is None and self.views():
            self.selected = len(self.views()) - 1

    def on_blur(self) -> None:
        self.selected = -1

    def action_select(self, step: int) -> None:
        views = self.views()
        if views:
            self.selected = max(0, min(len(views) - 1, self.selected + step))

    def action_select_edge(self, index: int) -> None:
        views = self.views()
        if views:
            self.selected = 0 if index == 0 else len(views) - 1

    def action_copy_selected(self) -> None:
        if (view := self.selected_view) is not None:
            self.post_message(self.CopyRequested(view))

    def action_edit_selected(self) -> None:
        if (view := self.selected_view) is not None:
            self.post_message(self.EditRequested(view))

    def action_inspect_selected(self) -> None:
        if (view := self.selected_view) is not None:
            self.post_message(self.InspectRequested(view))

    def action_toggle_reasoning(self) -> None:
        """Unfold or fold the selected reply's reasoning (its state lives in the view)."""
        view = self.selected_view
        if view is not None and not view.toggle_reasoning():
            self.notify(t("reasoning.none"), severity="warning")

    def action_branch(self, step: int) -> None:
        if (view := self.selected_view) is not None:
            self.post_message(self.BranchRequested(view, step))
