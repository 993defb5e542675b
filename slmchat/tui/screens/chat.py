"""The main screen: sidebar, chat log, prompt box, settings panel, status bar.

Chat turns run in one thread worker (group "generate"); the worker writes the reply
to the store in pieces and posts ``ReplyDelta`` / ``ReplyFinished`` back here.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Static
from textual.worker import get_current_worker

from slmchat.engine.store.store import StoreWriteError
from slmchat.errors import SlmChatError
from slmchat.i18n import t
from slmchat.tui.generation import (
    CONTINUABLE,
    STATUS_FOR_FINISH,
    ReplyJob,
    chat_messages,
    provenance,
    title_from,
)
from slmchat.tui.messages import ChatReady, ReplyDelta, ReplyFinished, ToolCallRequested
from slmchat.tui.screens.branches import BranchActions
from slmchat.tui.screens.compare import CompareActions
from slmchat.tui.screens.editor import EditorActions
from slmchat.tui.screens.model_switcher import ModelSwitchActions
from slmchat.tui.screens.prompt_inspector import InspectActions
from slmchat.tui.screens.side_panels import DOCK_MIN_WIDTH, PanelActions
from slmchat.tui.screens.tool_calls import ToolCallActions
from slmchat.tui.widgets.attachments_bar import AttachmentsBar
from slmchat.tui.widgets.chat_log import ChatLog
from slmchat.tui.widgets.finetune_item import FinetuneItem
from slmchat.tui.widgets.footer import FittedFooter
from slmchat.tui.widgets.message_view import MessageView
from slmchat.tui.widgets.offer_bar import OfferBar
from slmchat.tui.widgets.prompt_box import PromptBox
from slmchat.tui.widgets.settings_panel import SettingsPanel, params_from
from slmchat.tui.widgets.side_panel import SidePanel
from slmchat.tui.widgets.sidebar import ConversationSidebar

if TYPE_CHECKING:
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.session import EngineLike
    from slmchat.engine.store.store import Store


STATUS_REFRESH_S = 0.25  # how often a streaming reply repaints the status line


class ChatScreen(CompareActions, BranchActions, InspectActions, EditorActions,
                 ModelSwitchActions, PanelActions, ToolCallActions):
    DEFAULT_CSS = """
    ChatScreen #status-row { height: 1; }
    ChatScreen #status-row #status { width: 1fr; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        # The footer shows what a new user needs first and fits 80 columns; the rest is in
        # the command palette (Ctrl+P), the empty chat's hint and the message headers.
        Binding("escape", "stop", "Stop", id="chat.stop"),
        Binding("ctrl+n", "new_chat", "New", id="chat.new"),
        Binding("ctrl+r", "regenerate", "Regenerate", show=False, id="chat.regenerate"),
        Binding("ctrl+g", "continue_reply", "Continue", show=False, id="chat.continue"),
        Binding("ctrl+l", "focus_log", "Messages", show=False, id="chat.messages"),
        Binding("ctrl+s", "toggle_settings", "Settings", id="chat.settings"),
        Binding("ctrl+b", "toggle_sidebar", "Sidebar", show=False, id="chat.sidebar"),
        Binding("ctrl+f", "search", "Search", id="chat.search"),
        Binding("f4", "copy_last", "Copy reply", show=False, id="chat.copy_last"),
        Binding("f5", "edit_last", "Edit last", show=False, id="chat.edit_last"),
        Binding("f2", "rename_conversation", "Rename", show=False, id="chat.rename"),
        Binding("f3", "export_conversation", "Export", show=False, id="chat.export"),
        # Marks: with messages selected (Ctrl+L); the prompt box takes + and - as text.
        Binding("plus", "mark_good", "Good reply", show=False, id="chat.mark_good"),
        Binding("minus", "mark_bad", "Bad reply", show=False, id="chat.mark_bad"),
        Binding("f10", "edit_reply", "Edit reply", show=False, id="chat.edit_reply"),
        # Thinking models: unfold the latest reply's reasoning; thinking on/off per model.
        Binding("alt+t", "toggle_reasoning", "Show thinking", show=False, id="chat.reasoning"),
        Binding("alt+o", "toggle_thinking", "Thinking on/off", show=False, id="chat.thinking"),
    ]

    def __init__(self, engine: EngineLike, store: Store, defaults: dict[str, Any],
                 show_sidebar: bool = True) -> None:
        super().__init__(engine, store, defaults, show_sidebar)
        self._status_drawn_at = 0.0  # when a streaming reply last repainted the status
        self._sidebar_before_settings: bool | None = None

    # --- layout ---

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield ConversationSidebar(self.store, id="sidebar")
            with Vertical(id="chat"):
                yield ChatLog(id="log")
                yield Static(t("chat.edit_banner"), id="edit-banner")
                yield AttachmentsBar()
                yield OfferBar(id="offers")
                yield PromptBox(id="prompt")
            yield SettingsPanel(id="settings")
            yield SidePanel(self.panel_width, id="side")
        with Horizontal(id="status-row"):
            yield self.status_bar
            yield FinetuneItem(id="ft-item")
        yield FittedFooter(compact=True)

    def on_mount(self) -> None:
        self.query_one("#sidebar").display = self.show_sidebar
        self.query_one("#settings").display = False
        self.query_one("#edit-banner").display = False
        self.prompt.set_history(self.store.recent_user_prompts())
        self.query_one(SettingsPanel).load_values(self.chat_settings)
        self.prompt.focus()
        self.app.post_message(ChatReady())

    def on_resize(self, event: events.Resize) -> None:
        width = event.size.width
        self.set_class(width < 120, "-narrow")  # a narrower sidebar
        self.set_class(width < 100, "-tiny")
        # Below the docking width the settings panel takes the whole width, like the model
        # and fine-tune panels (app.tcss); Esc goes back to the chat.
        self.set_class(width < DOCK_MIN_WIDTH, "-undocked")

    # --- model state (called by the app) ---

    def model_loading(self, name: str) -> None:
        self.model_ready = False
        self.status.loading_name = name
        self.status.loading_step = None
        self.status.refresh_status()

    def model_load_progress(self, text: str, fraction: float) -> None:
        """A long load step (a model's first ONNX conversion) in the status bar."""
        self.status.loading_step = (text, fraction)
        self.status.refresh_status()

    async def model_loaded(self, spec: ModelSpec | None = None) -> None:
        self.model_ready = True
        self.status.loading_name = None
        self.status.loading_step = None
        self.status.load_error = None
        self.model_changed(spec, self.status.info, self.engine.info)
        if self.status.info is not self.engine.info:  # the last reply's speed was another
            self.status.ttft_s = self.status.decode_tps = None  # model's: not this one's
            self.status.speculative = None
        self.status.info = self.engine.info
        self.status.thinking = self.thinking_setting() is not False
        self.status.refresh_status()
        if self.pending:
            self.pending = False
            await self._start_reply()

    def model_failed(self, error: str) -> None:
        self.status.loading_name = None
        self.status.loading_step = None
        self.status.load_error = error
        self.model_ready = self.engine.info is not None  # the old model is still there
        self.status.info = self.engine.info
        self.status.refresh_status()
        if self.pending and self.model_ready:
            self.pending = False
            self.call_later(self._start_reply)

    # --- sending ---

    async def on_prompt_box_submitted(self, event: PromptBox.Submitted) -> None:
        event.stop()
        await self.submit(event.text)

    async def submit(self, text: str) -> None:
        """What Enter in the prompt does: send ``text`` unless a reply is under way."""
        text = text.strip()
        if not text:
            return
        if await self.handle_command(text):  # /attach, /detach
            self.prompt.clear()
            return
        if self.generating or self.pending:
            self.notify(t("chat.still_writing"), severity="warning")
            return
        self.prompt.remember(text)
        self.prompt.clear()
        if not await self.send(text):
            self.prompt.set_text(text)  # not saved: kept for another try

    async def type_ahead(self, lines: list[str], draft: str) -> None:
        """Keys typed before the first frame: the first finished line is sent, the rest
        waits in the prompt."""
        if lines:
            await self.submit(lines[0])
        rest = "\n".join([*lines[1:], draft] if draft else lines[1:])
        if rest:
            self.prompt.insert(rest)

    async def send(self, text: str) -> bool:
        """Save ``text`` and start the reply; False when it could not be saved (a full
        disk): then nothing changed, on screen or on disk."""
        self.clear_hit()
        # a new branch when editing: the old turns are kept
        sibling_of = self.editing.msg_id if self.editing is not None else None
        # Committed before generation starts: a crash never loses what the user typed.
        # A new conversation and its first message are saved together or not at all.
        try:
            with self.store.transaction():
                conv = self.conv or self.store.create_conversation(title_from(text),
                                                                   self.chat_settings)
                msg = self.store.add_message(conv.id, "user", text, sibling_of=sibling_of)
        except StoreWriteError as exc:
            self.not_saved(exc)
            return False
        if self.conv is None:
            self.conv = conv
            self.sidebar_reload()
        if self.editing is not None:
            await self.log_view.remove_from(self.editing)
            self.cancel_edit()
        await self.log_view.add(MessageView.from_stored(msg))
        self.log_view.scroll_end(animate=False)
        await self._start_reply()
        self.mark_branches()
        return True

    async def _start_reply(self, continue_view: MessageView | None = None) -> None:
        assert self.conv is not None
        if not self.model_ready:
            self.pending = True
            if not self.log_view.query(".-waiting"):
                waiting = MessageView("assistant", "", status="waiting")
                waiting.add_class("-waiting")
                await self.log_view.add(waiting)
            return
        await self._remove_waiting()
        try:
            params = params_from(self.chat_settings)
        except SlmChatError as exc:
            self.notify(str(exc), title=t("insp.invalid_settings"), severity="error")
            return
        history = self.store.messages(self.conv.id)
        messages = chat_messages(history, self.chat_settings.get("system_prompt"),
                                 continued=continue_view.msg_id if continue_view else None)
        retrieval = None
        if continue_view is None and not self._tool_chain:  # not on a tool's result
            messages, retrieval = self.with_files(messages, params)
        try:
            if continue_view is not None:
                self.store.update_message(continue_view.msg_id, status="streaming")
            else:
                msg = self.store.add_message(self.conv.id, "assistant", "", status="streaming")
            self.remember_conversation_model()
        except StoreWriteError as exc:  # the user's message is saved; Ctrl+R tries again
            self.not_saved(exc, "chat.reply_not_saved")
            return
        if continue_view is not None:
            view = continue_view
            job = ReplyJob(view.msg_id, messages, params, self.engine.info, continue_last=True,
                      initial_text=view.content, previous=view.provenance,
                      initial_reasoning=view.reasoning)
        else:
            view = MessageView.from_stored(msg)
            await self.log_view.add(view)
            job = ReplyJob(msg.id, messages, params, self.engine.info)
        job.retrieval = retrieval
        self.plan_tool_job(job)
        job.thinking = self.thinking_setting()
        self.job = job
        view.start_stream()
        self.status.generating = True
        self.status.refresh_status()
        self._generate(job)

    @work(thread=True, exclusive=True, group="generate")
    def _generate(self, job: ReplyJob) -> None:
        worker = get_current_worker()
        writer = self.store.reply_writer(job.msg_id, job.initial_text,
                                         reasoning=job.initial_reasoning)
        last = None
        error: str | None = None
        parts: list[str] = []
        try:
            messages, constraint = self.tools_for(job)
            for chunk in self.engine.stream_chat(messages, job.params, job.cancel,
                                                 continue_last=job.continue_last,
                                                 constraint=constraint, thinking=job.thinking):
                last = chunk
                if chunk.text:
                    parts.append(chunk.text)
                if chunk.text or chunk.reasoning:
                    writer.append(chunk.text, chunk.reasoning)
                    self.post_message(ReplyDelta(
                        job.msg_id, chunk.text, chunk.prompt_tokens + chunk.new_tokens,
                        chunk.decode_tps, chunk.reasoning, chunk.reasoning_tokens))
                if worker.is_cancelled:
                    job.cancel.cancel()
        except SlmChatError as exc:
            error = str(exc)
        except Exception as exc:  # keep the partial reply; show the reason
            error = f"{type(exc).__name__}: {exc}"
        finish = last.finish_reason if last is not None and last.finish_reason else None
        if last is not None and last.error:
            error = last.error
        status = STATUS_FOR_FINISH.get(finish or "", "error" if error else "stopped")
        prov = provenance(job, last, status, error)
        call = self.tool_call_of(job, "".join(parts), prov) if status == "done" else None
        try:
            writer.finish(status, prov)
            if call is not None:
                self.store.set_tool_call(job.msg_id, call, content="")
        except Exception as exc:  # e.g. the store was closed on exit
            error = error or t("compare.not_saved", error=exc)
            call = None
        self.post_message(ReplyFinished(job.msg_id, status, last, error, prov))
        if call is not None:  # asked for after the reply is shown as finished
            self.post_message(ToolCallRequested(job.msg_id, call, job.tool_chain))

    def on_reply_delta(self, event: ReplyDelta) -> None:
        view = self.log_view.view_for(event.msg_id)
        if view is not None and event.reasoning:
            view.append_reasoning(event.reasoning, event.reasoning_tokens)
        if view is not None and event.text:
            view.append(event.text)
        if event.context_used:  # the context bar and speed follow the reply as it grows
            status = self.status
            status.context_used = event.context_used
            status.decode_tps = event.decode_tps or status.decode_tps
            # A few times a second, not per token: every repaint of the status line takes
            # the UI thread (and the GIL) from the decode loop (benchmarks/bench_app.py).
            now = time.monotonic()
            if now - self._status_drawn_at >= STATUS_REFRESH_S:
                self._status_drawn_at = now
                status.refresh_status()

    async def on_reply_finished(self, event: ReplyFinished) -> None:
        view = self.log_view.view_for(event.msg_id)
        if view is not None:
            await view.finish(event.status, event.provenance)
        self.job = None
        status = self.status
        status.generating = False
        if event.last is not None:
            status.ttft_s = event.last.ttft_s
            status.decode_tps = event.last.decode_tps
            status.context_used = event.last.prompt_tokens + event.last.new_tokens
            status.speculative = ((event.last.accepted, event.last.drafted)
                                  if event.last.speculative else None)
        status.refresh_status()
        if event.error:
            self.notify(event.error, title=t("chat.generation_failed"), severity="error")
        if event.last is not None and event.last.warning:  # e.g. a damaged ONNX copy
            self.notify(event.last.warning, severity="warning", timeout=15)

    # --- chat actions ---

    def action_stop(self) -> None:
        panel = self.query_one(SettingsPanel)
        if panel.display and (panel.has_focus_within or not (self.job or self.pending)):
            self._close_settings()
        elif self.job is not None:
            self.job.cancel.cancel()
        elif self.pending:
            self.pending = False
            self.call_later(self._remove_waiting)
            self.notify(t("chat.cancelled"))
        elif self.editing is not None:
            self.cancel_edit()
            self.prompt.clear()
        else:
            self.prompt.focus()

    async def _remove_waiting(self) -> None:
        await self.log_view.query(".-waiting").remove()

    def _last_view(self) -> MessageView | None:
        views = [v for v in self.log_view.views() if v.msg_id]
        return views[-1] if views else None

    async def action_regenerate(self) -> None:
        if self.generating or self.pending or self.conv is None:
            self.notify(t("chat.nothing_to_regenerate"), severity="warning")
            return
        last = self._last_view()
        if last is None:
            return
        if last.role == "assistant":
            # The new reply is a sibling of this one, which stays as another branch.
            try:
                self.store.set_active(
                    self.store.get_message(last.msg_id).parent_id or last.msg_id)
            except StoreWriteError as exc:
                self.not_saved(exc, "chat.reply_not_saved")
                return
            await self.log_view.remove_from(last)
        await self._start_reply()
        self.mark_branches()

    async def action_continue_reply(self) -> None:
        last = self._last_view()
        if self.generating or last is None or last.role != "assistant" \
                or last.status not in CONTINUABLE:
            self.notify(t("chat.cannot_continue"), severity="warning")
            return
        await self._start_reply(continue_view=last)

    def action_focus_log(self) -> None:
        self.log_view.focus()

    # --- thinking models ---

    def action_toggle_reasoning(self) -> None:
        """Unfold or fold the reasoning of the selected reply, else of the latest one
        that has reasoning (also while it streams)."""
        selected = self.log_view.selected_view
        views = [selected] if selected is not None else [
            v for v in reversed(self.log_view.views()) if v.reasoning_block is not None][:1]
        if not any(v.toggle_reasoning() for v in views):
            self.notify(t("reasoning.none"), severity="warning")

    def action_toggle_thinking(self) -> None:
        """Thinking on/off for the current model, remembered for that model."""
        info = self.engine.info
        if info is None:
            self.notify(t("thinking.no_model"), severity="warning")
            return
        if not info.thinking_switch:
            self.notify(t("thinking.no_switch", name=info.name), severity="warning")
            return
        current = self.thinking_setting()
        on = not (current if current is not None else True)  # templates think by default
        remember = getattr(self.app, "set_thinking", None)
        if remember is not None:
            remember(info.path, on)
        self.status.thinking = on
        self.status.refresh_status()
        self.notify(t("thinking.now_on" if on else "thinking.now_off", name=info.name))

    def on_chat_log_copy_requested(self, event: ChatLog.CopyRequested) -> None:
        self._copy(event.view)

    def action_copy_last(self) -> None:
        views = [v for v in self.log_view.views() if v.role == "assistant" and v.msg_id]
        if views:
            self._copy(views[-1])

    def _copy(self, view: MessageView) -> None:
        self.app.copy_to_clipboard(view.content)
        self.notify(t("chat.copied", n=len(view.content)))

    def on_chat_log_edit_requested(self, event: ChatLog.EditRequested) -> None:
        self._begin_edit(event.view)

    def action_edit_last(self) -> None:
        users = [v for v in self.log_view.views() if v.role == "user"]
        if users:
            self._begin_edit(users[-1])

    def _begin_edit(self, view: MessageView) -> None:
        if view.role == "assistant":  # a reply is edited into the preferred answer
            self.action_edit_reply()
            return
        if view.role != "user":
            self.notify(t("chat.only_own"), severity="warning")
            return
        if self.generating:
            self.notify(t("chat.stop_first"), severity="warning")
            return
        self.editing = view
        view.add_class("-editing")
        self.query_one("#edit-banner").display = True
        self.prompt.set_text(view.content)
        self.prompt.focus()

    def cancel_edit(self) -> None:
        if self.editing is not None:
            self.editing.remove_class("-editing")
        self.editing = None
        self.query_one("#edit-banner").display = False

    # --- panels ---

    def action_toggle_sidebar(self) -> None:
        sidebar = self.query_one(ConversationSidebar)
        sidebar.display = not sidebar.display

    def action_search(self) -> None:
        sidebar = self.query_one(ConversationSidebar)
        sidebar.display = True
        sidebar.query_one("#search", Input).focus()

    def action_toggle_settings(self) -> None:
        panel = self.query_one(SettingsPanel)
        if panel.display:
            self._close_settings()
            return
        self.close_panel()  # one side panel at a time
        panel.display = True
        self.add_class("-settings-open")
        panel.load_values(self.chat_settings)
        panel.query_one("#set-system_prompt").focus()
        # Below 130 columns the sidebar makes way, so the chat keeps a readable width.
        sidebar = self.query_one(ConversationSidebar)
        self._sidebar_before_settings = sidebar.display
        if self.size.width < 130:
            sidebar.display = False

    def _close_settings(self) -> None:
        self.query_one(SettingsPanel).display = False
        self.remove_class("-settings-open")
        if self._sidebar_before_settings is not None:
            self.query_one(ConversationSidebar).display = self._sidebar_before_settings
            self._sidebar_before_settings = None
        self.prompt.focus()

    def on_settings_panel_saved(self, event: SettingsPanel.Saved) -> None:
        self.chat_settings = {**dict(event.values), **self.file_settings()}
        if self.conv is not None:
            try:
                self.store.set_conversation_settings(self.conv.id, self.chat_settings)
            except StoreWriteError as exc:  # the panel stays open: Save again once there is room
                self.not_saved(exc, "chat.settings_not_saved")
                return
        where = "chat.saved_here"
        if event.as_default:
            self.defaults = dict(event.values)
            save_default = getattr(self.app, "save_generation_defaults", None)
            if save_default is not None:
                save_default(event.values)
            where = "chat.saved_default"
        self._close_settings()
        self.notify(t(where))
