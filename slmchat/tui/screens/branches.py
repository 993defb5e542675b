"""Branches in the chat screen: "‹ 2/3 ›" on messages with siblings, and keys that move
between them (Left/Right on a selected message, Alt+Left/Right anywhere).

Editing an earlier message or regenerating a reply adds a sibling in the store (see
``Store.add_message(sibling_of=...)`` and ``Store.set_active``); the log shows one
branch, the path through the tree the store calls active (``ChatLog.mark_branches``
puts the marks on). The chat screen switches branches; what Alt+Left/Right acts on
and how a message is named in its notice are decided here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from slmchat.i18n import t

if TYPE_CHECKING:
    from slmchat.engine.store.store import StoredMessage
    from slmchat.tui.widgets.message_view import MessageView


@dataclass(frozen=True)
class BranchChoice:
    """The versions switched last: Alt+Left/Right with no message selected keeps acting
    on them until another message gets a new version (a regenerate or an edit)."""

    conv_id: int
    parent_id: int | None  # the switched message's parent
    newest_id: int  # the newest message id then


def which(view: MessageView) -> str:
    """"your message “name a capital…”" / "the reply “Paris is…”"."""
    line = next((ln.strip() for ln in view.content.splitlines() if ln.strip()), "")
    short = line if len(line) <= 40 else line[:39].rstrip() + "…"
    return t("branches.which_user" if view.role == "user" else "branches.which_reply",
             text=short)


def branch_target(views: list[MessageView], selected: MessageView | None,
                  messages: Iterable[StoredMessage], conv_id: int,
                  choice: BranchChoice | None) -> MessageView | None:
    """What Alt+Left/Right acts on: the message under the cursor (Ctrl+L), else the one
    whose versions were switched last, unless a message got a new version since, else
    the message on screen that got a new version last. ``messages``: every message of
    the conversation, all branches."""
    if selected is not None:
        return selected
    branched = [v for v in views if v.branch and v.msg_id]
    if not branched:
        return None
    newest: dict[int | None, int] = {}
    for m in messages:
        newest[m.parent_id] = max(newest.get(m.parent_id, 0), m.id)
    latest = max(branched, key=lambda v: newest.get(v.parent_id, 0))
    if choice is not None and choice.conv_id == conv_id \
            and newest.get(latest.parent_id, 0) <= choice.newest_id:
        chosen = next((v for v in branched if v.parent_id == choice.parent_id), None)
        if chosen is not None:
            return chosen
    return latest
