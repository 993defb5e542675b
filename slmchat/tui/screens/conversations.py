"""Conversation management for the chat screen: open, new, rename, delete, export."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.screen import Screen

from slmchat.engine.fsutil import write_private
from slmchat.engine.store.store import Conversation, Store, StoreWriteError
from slmchat.engine.store.transcript import to_json, to_markdown
from slmchat.i18n import localize_bindings, t
from slmchat.tui.generation import ReplyJob
from slmchat.tui.screens.dialogs import Confirm, TextPrompt
from slmchat.tui.widgets.chat_log import ChatLog
from slmchat.tui.widgets.message_view import MessageView
from slmchat.tui.widgets.prompt_box import PromptBox
from slmchat.tui.widgets.settings_panel import SettingsPanel
from slmchat.tui.widgets.sidebar import ConversationSidebar
from slmchat.tui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from slmchat.engine.session import EngineLike


def _slug(title: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-").lower()
    return slug[:40] or "conversation"


def default_export_path(title: str, conv_id: int, fmt: str = "md") -> Path:
    return Path.cwd() / f"slmchat-{conv_id}-{_slug(title)}.{fmt}"


class ConversationScreen(Screen[None]):
    """State of the main screen and conversation management.

    ChatScreen (chat.py) builds on this with the chat turn itself.
    """

    def __init__(self, engine: EngineLike, store: Store, defaults: dict[str, Any],
                 show_sidebar: bool = True) -> None:
        super().__init__()
        localize_bindings(self)  # ChatScreen's keys too (it builds on this class)
        self.engine = engine
        self.store = store
        self.defaults = dict(defaults)  # settings for a new chat
        self.show_sidebar = show_sidebar
        self.conv: Conversation | None = None
        self.chat_settings: dict[str, Any] = dict(defaults)
        self.model_ready = False
        self.job: ReplyJob | None = None
        self.pending = False  # a prompt is waiting for the model to finish loading
        # Built here, not in compose, so the app can report model state before mount.
        self.status_bar = StatusBar(id="status")
        self.editing: MessageView | None = None  # a user message being edited (chat.py)
        # What was typed and not sent, per conversation (None: the new chat), so that it
        # does not follow you into another conversation, ready to be sent there.
        self.drafts: dict[int | None, str] = {}

    def not_saved(self, exc: StoreWriteError, what: str = "chat.not_saved") -> None:
        """A write failed (a full disk): say so where it cannot be missed."""
        self.notify(t(what, error=exc), title=t("chat.not_saved_title"), severity="error",
                    timeout=30)

    @property
    def prompt(self) -> PromptBox:
        return self.query_one(PromptBox)

    @property
    def log_view(self) -> ChatLog:
        return self.query_one(ChatLog)

    @property
    def status(self) -> StatusBar:
        return self.status_bar

    @property
    def generating(self) -> bool:
        return self.job is not None

    def thinking_setting(self) -> bool | None:
        """enable_thinking for the model now loaded: the user's choice for it (the app
        remembers it per model), or None (the template's default, or no switch)."""
        info = self.engine.info
        lookup = getattr(self.app, "thinking_for", None)
        if info is None or not info.thinking_switch or lookup is None:
            return None
        value = lookup(info.path)
        return value if isinstance(value, bool) else None

    def cancel_edit(self) -> None:
        """Leaving the open conversation ends an edit in progress (the chat screen,
        which owns editing, overrides this)."""

    def sidebar_reload(self) -> None:
        sidebar = self.query_one(ConversationSidebar)
        sidebar.current = self.conv.id if self.conv else None
        sidebar.reload()

    def _busy(self) -> bool:
        if self.generating or self.pending:
            self.notify(t("busy.wait"), severity="warning")
            return True
        return False

    def _leave_draft(self, going_to: int | None) -> None:
        """Keep the prompt's text as the open conversation's draft and show the draft of
        ``going_to`` (nothing changes when it is the same conversation)."""
        here = self.conv.id if self.conv is not None else None
        if going_to == here:
            return
        if self.editing is None:  # an edit's text belongs to the message being edited
            text = self.prompt.text
            if text.strip():
                self.drafts[here] = text
            else:
                self.drafts.pop(here, None)
        self.prompt.load_draft(self.drafts.pop(going_to, ""))

    async def open_conversation(self, conv_id: int) -> None:
        if self._busy():
            return
        self._leave_draft(conv_id)
        self.cancel_edit()
        self.conv = self.store.get_conversation(conv_id)
        self.chat_settings = {**self.defaults, **self.conv.settings}
        self.query_one(SettingsPanel).load_values(self.chat_settings)
        log = self.log_view
        await log.clear()
        used = 0
        for msg in self.store.messages(conv_id):
            await log.add(MessageView.from_stored(msg))
            if msg.provenance:
                used = int(msg.provenance.get("prompt_tokens") or 0) + int(
                    msg.provenance.get("new_tokens") or 0)
        log.scroll_end(animate=False)
        self.status.context_used = used
        self.status.refresh_status()
        self.query_one(ConversationSidebar).current = conv_id
        self.sub_title = self.conv.title

    async def on_conversation_sidebar_selected(self, event: ConversationSidebar.Selected) -> None:
        event.stop()
        if self._busy():
            return
        if event.msg_id:  # a search hit: show the branch that holds it
            with contextlib.suppress(KeyError):  # deleted since the search
                self.store.choose_branch(event.msg_id)
        await self.open_conversation(event.conv_id)
        if self.conv is not None and self.conv.id == event.conv_id:
            self.prompt.focus()
            if event.msg_id:
                self.reveal(event.msg_id)

    def reveal(self, msg_id: int) -> None:
        """Mark the message a search found and scroll the log to it (once laid out)."""
        log = self.log_view
        view = log.view_for(msg_id)
        if view is None:
            return
        view.add_class("-hit")

        def scroll() -> None:
            log.release_anchor()  # or the next layout pulls it back to the end
            log.scroll_to_widget(view, animate=False, top=True)

        self.call_after_refresh(scroll)

    def clear_hit(self) -> None:
        for view in self.log_view.query(".-hit"):
            view.remove_class("-hit")

    async def action_new_chat(self) -> None:
        if self._busy():
            return
        self._leave_draft(None)
        self.cancel_edit()
        self.conv = None
        self.chat_settings = dict(self.defaults)
        self.query_one(SettingsPanel).load_values(self.chat_settings)
        await self.log_view.clear()
        self.status.context_used = 0
        self.status.refresh_status()
        self.sidebar_reload()
        self.prompt.focus()

    def _target(self) -> tuple[int, str] | None:
        """The conversation an action applies to: highlighted in the sidebar, else open."""
        sidebar = self.query_one(ConversationSidebar)
        if sidebar.display and sidebar.has_focus_within and sidebar.highlighted_id is not None:
            conv = self.store.get_conversation(sidebar.highlighted_id)
            return conv.id, conv.title
        if self.conv is not None:
            return self.conv.id, self.conv.title
        self.notify(t("conv.none_yet"), severity="warning")
        return None

    def action_rename_conversation(self) -> None:
        target = self._target()
        if target is None:
            return
        conv_id, title = target

        def done(new_title: str | None) -> None:
            if new_title:
                try:
                    self.store.rename_conversation(conv_id, new_title)
                except StoreWriteError as exc:
                    self.not_saved(exc, "chat.change_not_saved")
                    return
                if self.conv is not None and self.conv.id == conv_id:
                    self.conv = self.store.get_conversation(conv_id)
                self.sidebar_reload()

        self.app.push_screen(TextPrompt(t("conv.rename"), title), done)

    def action_delete_conversation(self) -> None:
        target = self._target()
        if target is None:
            return
        conv_id, title = target
        if self.conv is not None and self.conv.id == conv_id and self._busy():
            return

        async def done(yes: bool | None) -> None:
            if not yes:
                return
            try:
                self.store.delete_conversation(conv_id)
            except StoreWriteError as exc:  # nothing was deleted
                self.not_saved(exc, "chat.change_not_saved")
                return
            if self.conv is not None and self.conv.id == conv_id:
                await self.action_new_chat()
            self.drafts.pop(conv_id, None)
            self.sidebar_reload()
            self.notify(t("conv.deleted", title=title))

        self.app.push_screen(Confirm(t("conv.delete_confirm", title=title)), done)

    def action_export_conversation(self, fmt: str = "md") -> None:
        target = self._target()
        if target is None:
            return
        conv_id, title = target

        def done(path_text: str | None) -> None:
            if not path_text:
                return
            path = Path(path_text).expanduser()
            as_json = path.suffix.lower() == ".json"
            try:
                text = (to_json(self.store, conv_id) if as_json
                        else to_markdown(self.store, conv_id))
                write_private(path, text)
            except OSError as exc:
                self.notify(t("conv.export_failed", error=exc), severity="error")
                return
            self.notify(t("conv.exported", path=path), title=t("conv.export_title"))

        self.app.push_screen(TextPrompt(
            t("conv.export_to"), str(default_export_path(title, conv_id, fmt)),
            hint=t("conv.export_hint"),
        ), done)
