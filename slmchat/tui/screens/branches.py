"""Branches in the chat screen: "‹ 2/3 ›" on messages with siblings, and keys that move
between them (Left/Right on a selected message, Alt+Left/Right anywhere).

Editing an earlier message or regenerating a reply adds a sibling in the store (see
``Store.add_message(sibling_of=...)`` and ``Store.set_active``); the log shows one
branch, the path through the tree the store calls active. ``BranchActions`` is mixed
into ChatScreen.
"""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType

from slmchat.i18n import t
from slmchat.tui.screens.conversations import ConversationScreen
from slmchat.tui.widgets.chat_log import ChatLog
from slmchat.tui.widgets.message_view import MessageView


class BranchActions(ConversationScreen):
    """Shows and switches branches of the open conversation."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("alt+left", "branch(-1)", "‹ Branch", show=False, id="chat.branch_prev"),
        Binding("alt+right", "branch(1)", "Branch ›", show=False, id="chat.branch_next"),
    ]

    async def open_conversation(self, conv_id: int) -> None:
        await super().open_conversation(conv_id)
        self.mark_branches()

    def mark_branches(self) -> None:
        """Put "‹ n/of ›" on every shown message that has siblings."""
        if self.conv is None:
            return
        positions = self.store.branch_positions(self.conv.id)
        for view in self.log_view.views():
            view.set_branch(positions.get(view.msg_id) if view.msg_id else None)

    async def switch_branch(self, view: MessageView, step: int) -> None:
        """Show the sibling ``step`` away from ``view`` (and the path last seen below it)."""
        if self.conv is None or not view.msg_id:
            return
        if self.generating or self.pending:
            self.notify(t("busy.wait"), severity="warning")
            return
        ids = [m.id for m in self.store.siblings(view.msg_id)]
        if len(ids) < 2:
            self.notify(t("branches.none"))
            return
        target = ids.index(view.msg_id) + step
        if not 0 <= target < len(ids):
            self.app.bell()
            return
        index = self.log_view.views().index(view)
        focused = self.log_view.has_focus
        self.store.choose_branch(ids[target])
        await self.open_conversation(self.conv.id)
        if focused:
            self.log_view.selected = min(index, len(self.log_view.views()) - 1)

    async def on_chat_log_branch_requested(self, event: ChatLog.BranchRequested) -> None:
        await self.switch_branch(event.view, event.step)

    async def action_branch(self, step: int) -> None:
        """Alt+Left/Right: the selected message's siblings, else the last message's that
        has any."""
        view = self.log_view.selected_view
        if view is None or view.branch is None:
            view = next((v for v in reversed(self.log_view.views()) if v.branch), None)
        if view is None:
            self.notify(t("branches.none"))
            return
        await self.switch_branch(view, step)
