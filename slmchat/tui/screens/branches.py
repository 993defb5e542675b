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
    # (conversation, the switched message's parent, the newest message id then)
    _branch_choice: tuple[int, int | None, int] | None = None

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

    async def switch_branch(self, view: MessageView, step: int, announce: bool = False) -> None:
        """Show the sibling ``step`` away from ``view`` (and the path last seen below it);
        ``announce``: say which message switched (Alt+Left/Right, away from the cursor)."""
        if self.conv is None or not view.msg_id:
            return
        if self.generating or self.pending:
            self.notify(t("busy.wait"), severity="warning")
            return
        siblings = self.store.siblings(view.msg_id)
        ids = [m.id for m in siblings]
        if len(ids) < 2:
            self.notify(t("branches.none"))
            return
        target = ids.index(view.msg_id) + step
        if not 0 <= target < len(ids):
            self.app.bell()
            if announce:
                self.notify(t("branches.edge_first" if step < 0 else "branches.edge_last",
                              what=self._which(view)))
            return
        index = self.log_view.views().index(view)
        focused = self.log_view.has_focus
        self.store.choose_branch(ids[target])
        # Alt+Left/Right with no message selected keeps acting on this message's versions
        # until another one gets a new version (a regenerate or an edit).
        self._branch_choice = (self.conv.id, view.parent_id, max(
            m.id for m in self.store.all_messages(self.conv.id)))
        await self.open_conversation(self.conv.id)
        if focused:
            self.log_view.selected = min(index, len(self.log_view.views()) - 1)
        if announce:
            shown = self.log_view.view_for(ids[target])
            if shown is not None:
                self.notify(t("branches.switched", n=target + 1, of=len(ids),
                              what=self._which(shown)))

    @staticmethod
    def _which(view: MessageView) -> str:
        """"your message “name a capital…”" / "the reply “Paris is…”"."""
        line = next((ln.strip() for ln in view.content.splitlines() if ln.strip()), "")
        short = line if len(line) <= 40 else line[:39].rstrip() + "…"
        return t("branches.which_user" if view.role == "user" else "branches.which_reply",
                 text=short)

    async def on_chat_log_branch_requested(self, event: ChatLog.BranchRequested) -> None:
        await self.switch_branch(event.view, event.step)

    def branch_target(self) -> MessageView | None:
        """What Alt+Left/Right acts on: the message under the cursor (Ctrl+L), else the one
        whose versions were switched last, unless a message got a new version since, else
        the message on screen that got a new version last."""
        log = self.log_view
        if log.selected_view is not None:
            return log.selected_view
        branched = [v for v in log.views() if v.branch and v.msg_id]
        if not branched or self.conv is None:
            return None
        newest: dict[int | None, int] = {}
        for m in self.store.all_messages(self.conv.id):
            newest[m.parent_id] = max(newest.get(m.parent_id, 0), m.id)
        latest = max(branched, key=lambda v: newest.get(v.parent_id, 0))
        choice = self._branch_choice
        if choice is not None and choice[0] == self.conv.id \
                and newest.get(latest.parent_id, 0) <= choice[2]:
            chosen = next((v for v in branched if v.parent_id == choice[1]), None)
            if chosen is not None:
                return chosen
        return latest

    async def action_branch(self, step: int) -> None:
        """Alt+Left/Right: see ``branch_target``; the notice says which message moved."""
        view = self.branch_target()
        if view is None:
            self.notify(t("branches.none"))
            return
        if view.branch is None:  # the message under the cursor has one version
            self.notify(t("branches.none_here", what=self._which(view)))
            return
        await self.switch_branch(view, step, announce=True)
