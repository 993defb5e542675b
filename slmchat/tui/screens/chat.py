"""The main screen: sidebar, chat log, prompt box, settings panel, status bar.

One coordinator, in the manner of Posting and Harlequin: the widgets own what they show
and post messages up (the chat log's requests, the attachments bar's ``Changed``, the
fine-tune item's ``RunEnded``, the offer bar's ``Chosen``); the screen decides what they
mean, and asks the app for what is the app's (messages.LoadModelRequested,
PanelRequested, GenerationDefaultsSaved, ThinkingChosen). Each feature's own logic lives
beside its view: branches.py (what Alt+Left/Right acts on), prompt_inspector.py (the
targets), compare.py, model_switcher.py (same model? its label), side_panels.py (the
panels, a run's end), tool_calls.py (ToolCalls), chat_files.py (retrieval, commands,
curation), editor.py, conversations.py (rename, delete, export dialogs).

Chat turns run in one thread worker (group "generate"); the worker writes the reply
to the store in pieces and posts ``ReplyDelta`` / ``ReplyFinished`` back here.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Static
from textual.worker import get_current_worker

from slmchat.engine.model.spec import ModelSpec, same_model
from slmchat.engine.store.store import StoreWriteError
from slmchat.errors import SlmChatError
from slmchat.i18n import localize_bindings, t
from slmchat.tui.generation import (
    CONTINUABLE,
    STATUS_FOR_FINISH,
    ReplyJob,
    chat_messages,
    provenance,
    title_from,
)
from slmchat.tui.messages import (
    ChatReady,
    CompareRunRequested,
    GenerationDefaultsSaved,
    LoadModelRequested,
    PanelRequested,
    ReplyDelta,
    ReplyFinished,
    ThinkingChosen,
    TintDraftsChanged,
    ToolCallDone,
    ToolCallRequested,
    ToolsProblem,
)
from slmchat.tui.screens import branches, chat_files, conversations, prompt_inspector
from slmchat.tui.screens.compare import CompareChoice, CompareScreen, CompareSetup
from slmchat.tui.screens.dialogs import ToolConsent
from slmchat.tui.screens.editor import edit_in_editor
from slmchat.tui.screens.model_switcher import spec_label
from slmchat.tui.screens.side_panels import (
    DOCK_MIN_WIDTH,
    SIDEBAR_MIN_WIDTH,
    build_panel,
    run_end_notice,
)
from slmchat.tui.screens.tool_calls import ToolCalls
from slmchat.tui.ui_state import spec_dict, spec_from
from slmchat.tui.widgets.attachments_bar import AttachmentsBar
from slmchat.tui.widgets.chat_log import ChatLog
from slmchat.tui.widgets.citations import Citations
from slmchat.tui.widgets.finetune_item import FinetuneItem
from slmchat.tui.widgets.footer import FittedFooter
from slmchat.tui.widgets.message_view import MessageView
from slmchat.tui.widgets.offer_bar import OfferBar
from slmchat.tui.widgets.prompt_box import PromptBox
from slmchat.tui.widgets.settings_panel import SettingsPanel, params_from
from slmchat.tui.widgets.side_panel import SidePanel
from slmchat.tui.widgets.sidebar import ConversationSidebar
from slmchat.tui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from collections.abc import Callable

    from slmchat.engine.finetune.rundir import RunSummary
    from slmchat.engine.generation.prompting import ChatMessage
    from slmchat.engine.generation.sampling import SamplingParams
    from slmchat.engine.model.discovery import ModelEntry
    from slmchat.engine.model.spec import ModelInfo
    from slmchat.engine.retrieval.index import DocumentIndex
    from slmchat.engine.session import EngineLike
    from slmchat.engine.store.store import Conversation, Store, StoredMessage


class ChatScreen(Screen[None]):
    DEFAULT_CSS = """
    ChatScreen #status-row { height: 1; }
    ChatScreen #status-row #status { width: 1fr; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f8", "inspect_prompt", "Inspect prompt", show=False, id="chat.inspect_prompt"),
        Binding("alt+left", "branch(-1)", "‹ Branch", show=False, id="chat.branch_prev"),
        Binding("alt+right", "branch(1)", "Branch ›", show=False, id="chat.branch_next"),
        Binding("f9", "compare", "Compare", show=False, id="chat.compare"),
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

    # Set by the app before mounting ("attributes down"); tests set their own.
    panel_width = 64  # the docked panel's remembered width
    runs_root: Path | None = None  # where fine-tune runs are watched (None: the default)
    settings: Any = None  # the app's Settings: for the panels and model discovery
    discover_fn: Callable[[], list[ModelEntry]] | None = None  # where panels find models
    model_spec: ModelSpec | None = None  # what the app loaded last (None: not known)
    tint_drafts = False  # [ui] tint_accepted_drafts: tint accepted draft tokens in replies

    def __init__(self, engine: EngineLike, store: Store, defaults: dict[str, Any],
                 show_sidebar: bool = True) -> None:
        super().__init__()
        localize_bindings(self)
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
        self.editing: MessageView | None = None  # a user message being edited
        self.thinking_choices: dict[str, bool] = {}  # model path -> on (the app's memory)
        self.tool_calls = ToolCalls()  # the app sets its hub
        self._doc_index: DocumentIndex | None = None
        self._branch_choice: branches.BranchChoice | None = None
        self._sidebar_before_settings: bool | None = None
        self._sidebar_before_panel: bool | None = None

    # --- layout: the widgets this screen composes, and only it reaches ---

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield ConversationSidebar(self.store, id="sidebar")
            with Vertical(id="chat"):
                yield ChatLog(id="log")
                yield Static(t("chat.edit_banner"), id="edit-banner")
                yield AttachmentsBar(self.doc_index)
                yield OfferBar(id="offers")
                yield PromptBox(id="prompt")
            yield SettingsPanel(id="settings")
            yield SidePanel(self.panel_width, id="side")
        with Horizontal(id="status-row"):
            yield self.status_bar
            yield FinetuneItem(self.runs_root, id="ft-item")
        yield FittedFooter(compact=True)

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
    def side(self) -> SidePanel:
        return self.query_one(SidePanel)

    @property
    def offers(self) -> OfferBar:
        return self.query_one(OfferBar)

    @property
    def sidebar(self) -> ConversationSidebar:
        return self.query_one(ConversationSidebar)

    @property
    def settings_panel(self) -> SettingsPanel:
        return self.query_one(SettingsPanel)

    @property
    def attachments_bar(self) -> AttachmentsBar:
        return self.query_one(AttachmentsBar)

    def on_mount(self) -> None:
        self.sidebar.display = self.show_sidebar
        self.settings_panel.display = False
        self.query_one("#edit-banner").display = False
        self.prompt.set_history(self.store.recent_user_prompts())
        self.settings_panel.load_values(self.chat_settings)
        self.settings_panel.set_tint(self.tint_drafts)
        self.log_view.tint_drafts = self.tint_drafts
        self.prompt.focus()
        self.app.post_message(ChatReady())

    def on_resize(self, event: events.Resize) -> None:
        width = event.size.width
        self.set_class(width < 120, "-narrow")  # a narrower sidebar
        self.set_class(width < 100, "-tiny")
        # Below the docking width the settings panel takes the whole width, like the model
        # and fine-tune panels (app.tcss); Esc goes back to the chat.
        self.set_class(width < DOCK_MIN_WIDTH, "-undocked")
        side = self.side
        if side.kind is not None:
            if self.can_dock():
                side.fit(self.size.width)
            else:  # too narrow to share: the panel goes on at full width
                kind = side.kind
                self.close_panel()
                self.post_message(PanelRequested(kind))

    # --- state ---

    @property
    def generating(self) -> bool:
        return self.job is not None or self.tool_calls.busy

    @property
    def attachments(self) -> list[str]:
        value = self.chat_settings.get("attachments") or []
        return [str(p) for p in value] if isinstance(value, list) else []

    @property
    def tools_on(self) -> bool:
        """Tools are configured and this conversation has not turned them off."""
        return self.tool_calls.configured and not self.chat_settings.get("tools_off")

    def file_settings(self) -> dict[str, Any]:
        """The part of the chat settings the settings panel does not edit."""
        extra: dict[str, Any] = {"attachments": self.attachments} if self.attachments else {}
        if self.chat_settings.get("tools_off"):
            extra["tools_off"] = True
        return extra

    def _save_chat_settings(self, **changes: Any) -> bool:
        """Change the chat settings (a None value drops the key) and keep them with the
        open conversation; False when that write failed (they hold for this session)."""
        dropped = {k for k, v in changes.items() if v is None}
        self.chat_settings = {k: v for k, v in {**self.chat_settings, **changes}.items()
                              if k not in dropped}
        if self.conv is None:
            return True
        try:
            self.store.set_conversation_settings(self.conv.id, self.chat_settings)
        except StoreWriteError as exc:
            self.not_saved(exc, "chat.settings_not_saved")
            return False
        return True

    def thinking_setting(self) -> bool | None:
        """enable_thinking for the model now loaded: the user's choice for it (the app
        remembers it per model), or None (the template's default, or no switch)."""
        info = self.engine.info
        if info is None or not info.thinking_switch:
            return None
        return self.thinking_choices.get(info.path)

    def doc_index(self) -> DocumentIndex:
        """The index of attached files (opened on first use)."""
        if self._doc_index is None:
            from slmchat.engine.retrieval.index import DocumentIndex

            self._doc_index = DocumentIndex.open_default()
        return self._doc_index

    def not_saved(self, exc: StoreWriteError, what: str = "chat.not_saved") -> None:
        """A write failed (a full disk): say so where it cannot be missed."""
        self.notify(t(what, error=exc), title=t("chat.not_saved_title"), severity="error",
                    timeout=30)

    def _busy(self) -> bool:
        if self.generating or self.pending:
            self.notify(t("busy.wait"), severity="warning")
            return True
        return False

    # --- model state (called by the app) ---

    def model_loading(self, name: str) -> None:
        self.model_ready = False
        self.status.model_loading(name)

    def model_load_progress(self, text: str, fraction: float) -> None:
        """A long load step (a model's first ONNX conversion) in the status bar."""
        self.status.load_progress(text, fraction)

    async def model_loaded(self, spec: ModelSpec | None = None) -> None:
        self.model_ready = True
        self.model_changed(spec, self.status.info, self.engine.info)
        self.status.model_loaded(self.engine.info, self.thinking_setting() is not False)
        if self.pending:
            self.pending = False
            await self._start_reply()

    def model_failed(self, error: str) -> None:
        self.model_ready = self.engine.info is not None  # the old model is still there
        self.status.model_failed(error, self.engine.info)
        if self.pending and self.model_ready:
            self.pending = False
            self.call_later(self._start_reply)

    def model_changed(self, spec: ModelSpec | None, old: ModelInfo | None,
                      new: ModelInfo | None) -> None:
        """The app loaded ``spec``: mark the change in the open conversation (a divider
        in the log and the store, so it is there when the conversation is reopened)."""
        if spec is not None:
            self.model_spec = spec
        if new is None or old is None or (old.path, old.label, old.adapter) == (
                new.path, new.label, new.adapter):
            return
        offers = self.offers
        offers.hide("switch-back")
        if spec is not None and offers.kind == "finetune" \
                and getattr(offers.payload, "out", None) == spec.path:
            offers.hide()  # "Use model" was taken (from the panel or the switcher)
        if self.conv is None or spec is None:
            return
        if same_model(self.conv.model, spec_dict(spec)):
            return  # back to the model that wrote this conversation ("Switch back"): no change
        try:
            change = self.store.add_model_change(self.conv.id, new.label, spec_dict(spec))
        except StoreWriteError as exc:  # the model is loaded; only the divider is missing
            self.not_saved(exc, "chat.divider_not_saved")
            return
        self.conv = replace(self.conv, model=spec_dict(spec))
        self.call_later(self.log_view.add_divider, change.label)

    def remember_conversation_model(self) -> None:
        """A reply is about to be written: the conversation's model is the loaded one."""
        if self.conv is None or self.model_spec is None:
            return
        current = spec_dict(self.model_spec)
        if not same_model(self.conv.model, current):
            self.store.set_conversation_model(self.conv.id, current)
            self.conv = replace(self.conv, model=current)

    def offer_switch_back(self) -> None:
        """The open conversation was written by another model: offer it (never switch)."""
        offers = self.offers
        offers.hide("switch-back")
        saved = self.conv.model if self.conv is not None else None
        if saved is None or self.model_spec is None:
            return
        if same_model(saved, spec_dict(self.model_spec)):
            return
        spec = spec_from(saved)
        if spec is None:
            return
        text = t("switcher.back", old=spec_label(spec), new=spec_label(self.model_spec))
        self.call_later(offers.offer, "switch-back", text,
                        [(t("switcher.back_action"), "switch")], spec)

    # --- conversations ---

    def sidebar_reload(self) -> None:
        sidebar = self.sidebar
        sidebar.current = self.conv.id if self.conv else None
        sidebar.reload()

    def _leave_draft(self, going_to: int | None) -> None:
        """The prompt keeps what was typed here and shows ``going_to``'s draft."""
        self.prompt.switch_draft(self.conv.id if self.conv is not None else None, going_to,
                                 keep=self.editing is None)

    async def open_conversation(self, conv_id: int) -> None:
        """Show ``conv_id``: its shown branch, model dividers, files, settings."""
        if self._busy():
            return
        self._leave_draft(conv_id)
        self.cancel_edit()
        self.conv = self.store.get_conversation(conv_id)
        self.chat_settings = {**self.defaults, **self.conv.settings}
        self.settings_panel.load_values(self.chat_settings)
        log = self.log_view
        await log.clear()
        used = 0
        for msg in self.store.messages(conv_id):
            await log.add(MessageView.from_stored(msg))
            prov = msg.prov
            if prov is not None:
                used = (prov.prompt_tokens or 0) + (prov.new_tokens or 0)
        log.scroll_end(animate=False)
        self.status.context_used = used
        self.status.refresh_status()
        self.sidebar.current = conv_id
        self.sub_title = self.conv.title
        self.attachments_bar.set_paths(self.attachments)
        await log.place_dividers(self.store.model_changes(conv_id))
        self.offer_switch_back()
        self.mark_branches()

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
            if event.msg_id:  # marked and scrolled to
                self.log_view.reveal(event.msg_id)

    async def action_new_chat(self) -> None:
        if self._busy():
            return
        self._leave_draft(None)
        self.cancel_edit()
        self.conv = None
        self.chat_settings = dict(self.defaults)
        self.settings_panel.load_values(self.chat_settings)
        await self.log_view.clear()
        self.status.context_used = 0
        self.status.refresh_status()
        self.sidebar_reload()
        self.attachments_bar.set_paths(self.attachments)
        self.prompt.focus()

    def _target(self) -> tuple[int, str] | None:
        """The conversation an action applies to: highlighted in the sidebar, else open."""
        sidebar = self.sidebar
        if sidebar.display and sidebar.has_focus_within and sidebar.highlighted_id is not None:
            conv = self.store.get_conversation(sidebar.highlighted_id)
            return conv.id, conv.title
        if self.conv is not None:
            return self.conv.id, self.conv.title
        self.notify(t("conv.none_yet"), severity="warning")
        return None

    def action_rename_conversation(self) -> None:
        if (target := self._target()) is not None:
            conv_id = target[0]

            def renamed() -> None:
                if self.conv is not None and self.conv.id == conv_id:
                    self.conv = self.store.get_conversation(conv_id)
                self.sidebar_reload()

            conversations.rename(self.app, self.store, *target, renamed, self.not_saved)

    def action_delete_conversation(self) -> None:
        target = self._target()
        if target is None:
            return
        conv_id = target[0]
        if self.conv is not None and self.conv.id == conv_id and self._busy():
            return

        async def deleted() -> None:
            if self.conv is not None and self.conv.id == conv_id:
                await self.action_new_chat()
            self.prompt.drafts.pop(conv_id, None)
            self.sidebar_reload()

        conversations.delete(self.app, self.store, *target, deleted, self.not_saved)

    def action_export_conversation(self, fmt: str = "md") -> None:
        if (target := self._target()) is not None:
            conversations.export(self.app, self.store, *target, fmt)

    # --- sending ---

    async def on_prompt_box_submitted(self, event: PromptBox.Submitted) -> None:
        event.stop()
        await self.submit(event.text)

    async def submit(self, text: str) -> None:
        """What Enter in the prompt does: send ``text`` unless a reply is under way."""
        text = text.strip()
        if not text:
            return
        if self.files_command(text):  # /attach, /detach
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
        self.log_view.clear_hits()
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

    def _with_files(self, messages: list[ChatMessage], params: SamplingParams
                    ) -> tuple[list[ChatMessage], dict[str, Any] | None]:
        """The messages with the attached files' best passages, and their provenance
        (None when no files are attached, or they could not be used)."""
        if not self.attachments:
            return messages, None
        try:
            return chat_files.with_files(
                self.doc_index(), self.attachments, messages,
                lambda m: self.engine.preview_prompt(m, params), params.max_new_tokens)
        except SlmChatError as exc:
            self.notify(str(exc), title=t("files.not_used_title"), severity="warning")
            return messages, None

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
        if continue_view is None and not self.tool_calls.chain:  # not on a tool's result
            messages, retrieval = self._with_files(messages, params)
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
        self.tool_calls.plan(job, self.tools_on)
        job.thinking = self.thinking_setting()
        self.job = job
        view.start_stream()
        self.status.reply_started()
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
            messages, constraint = self.tool_calls.tools_for(job, self.post_message)
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
                        chunk.decode_tps, chunk.reasoning, chunk.reasoning_tokens,
                        chunk.accepted_draft))
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
        call = self.tool_calls.call_of(job, "".join(parts), prov) if status == "done" else None
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
            view.append(event.text, event.accepted_draft)
        if event.context_used:  # the context bar and speed follow the reply as it grows
            self.status.reply_progress(event.context_used, event.decode_tps)

    async def on_reply_finished(self, event: ReplyFinished) -> None:
        view = self.log_view.view_for(event.msg_id)
        if view is not None:
            await view.finish(event.status, event.provenance)
        self.job = None
        self.status.reply_finished(event.last)
        if event.error:
            self.notify(event.error, title=t("chat.generation_failed"), severity="error")
        if event.last is not None and event.last.warning:  # e.g. a damaged ONNX copy
            self.notify(event.last.warning, severity="warning", timeout=15)

    # --- chat actions ---

    def action_stop(self) -> None:
        panel = self.settings_panel
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

    def on_chat_log_copy_requested(self, event: ChatLog.CopyRequested) -> None:
        self._copy(event.view)

    def action_copy_last(self) -> None:
        views = [v for v in self.log_view.views() if v.role == "assistant" and v.msg_id]
        if views:
            self._copy(views[-1])

    def _copy(self, view: MessageView) -> None:
        self.app.copy_to_clipboard(view.content)
        self.notify(t("chat.copied", n=len(view.content)))

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
        self.thinking_choices[info.path] = on
        self.post_message(ThinkingChosen(info.path, on))
        self.status.thinking = on
        self.status.refresh_status()
        self.notify(t("thinking.now_on" if on else "thinking.now_off", name=info.name))

    # --- editing a message (a new branch) and the prompt in $EDITOR ---

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

    def on_prompt_box_editor_requested(self, event: PromptBox.EditorRequested) -> None:
        """Ctrl+E: the prompt in $VISUAL / $EDITOR (editor.py)."""
        event.stop()
        edited = edit_in_editor(self.app, event.box.text)
        if edited is not None:
            event.box.set_text(edited.rstrip("\n"))
        event.box.focus()

    # --- branches (branches.py) ---

    def mark_branches(self) -> None:
        """Put "‹ n/of ›" on every shown message that has siblings."""
        if self.conv is not None:
            self.log_view.mark_branches(self.store.branch_positions(self.conv.id))

    async def switch_branch(self, view: MessageView, step: int, announce: bool = False) -> None:
        """Show the sibling ``step`` away from ``view`` (and the path last seen below it);
        ``announce``: say which message switched (Alt+Left/Right, away from the cursor)."""
        if self.conv is None or not view.msg_id:
            return
        if self._busy():
            return
        ids = [m.id for m in self.store.siblings(view.msg_id)]
        if len(ids) < 2:
            self.notify(t("branches.none"))
            return
        target = ids.index(view.msg_id) + step
        if not 0 <= target < len(ids):
            self.app.bell()
            if announce:
                self.notify(t("branches.edge_first" if step < 0 else "branches.edge_last",
                              what=branches.which(view)))
            return
        log = self.log_view
        index, focused = log.views().index(view), log.has_focus
        self.store.choose_branch(ids[target])
        self._branch_choice = branches.BranchChoice(self.conv.id, view.parent_id, max(
            m.id for m in self.store.all_messages(self.conv.id)))
        await self.open_conversation(self.conv.id)
        if focused:
            log.selected = min(index, len(log.views()) - 1)
        shown = log.view_for(ids[target]) if announce else None
        if shown is not None:
            self.notify(t("branches.switched", n=target + 1, of=len(ids),
                          what=branches.which(shown)))

    async def on_chat_log_branch_requested(self, event: ChatLog.BranchRequested) -> None:
        await self.switch_branch(event.view, event.step)

    async def action_branch(self, step: int) -> None:
        """Alt+Left/Right: see ``branches.branch_target``; the notice says which moved."""
        log = self.log_view
        view = None if self.conv is None else branches.branch_target(
            log.views(), log.selected_view, self.store.all_messages(self.conv.id),
            self.conv.id, self._branch_choice)
        if view is None:
            self.notify(t("branches.none"))
        elif view.branch is None:  # the message under the cursor has one version
            self.notify(t("branches.none_here", what=branches.which(view)))
        else:
            await self.switch_branch(view, step, announce=True)

    # --- the prompt inspector (prompt_inspector.py) ---

    def _open_inspector(self, make: Callable[[], prompt_inspector.InspectTarget],
                        empty: str, error_title: str = "") -> None:
        """The inspector on ``make()``'s target; ``empty``: what to say when it has no
        messages."""
        try:
            target = make()
        except SlmChatError as exc:
            self.notify(str(exc), title=error_title, severity="error")
            return
        if not target.messages:
            self.notify(empty, severity="warning")
        elif self.engine.info is None:
            self.notify(t("insp.no_model_loaded"), severity="warning")
        else:
            self.app.push_screen(prompt_inspector.PromptInspector(self.engine, target))

    def _history(self) -> list[StoredMessage]:
        return self.store.messages(self.conv.id) if self.conv is not None else []

    def action_inspect_prompt(self) -> None:
        self._open_inspector(lambda: prompt_inspector.next_reply_target(
            self._history(), self.chat_settings, self.prompt.text, self.thinking_setting()),
            t("insp.nothing"), t("insp.invalid_settings"))

    def on_chat_log_inspect_requested(self, event: ChatLog.InspectRequested) -> None:
        if event.view.msg_id:
            self._open_inspector(lambda: prompt_inspector.past_target(
                event.view, self._history(), self.chat_settings, self.thinking_setting()),
                t("insp.no_messages"))

    # --- two models side by side (compare.py) ---

    def compare_discover(self) -> list[ModelEntry]:
        from slmchat.engine.model.discovery import discover

        return discover(self.settings)

    def action_compare(self) -> None:
        if self.generating or self.pending:
            self.notify(t("compare.wait_reply"), severity="warning")
            return
        info = self.engine.info
        if info is None:
            self.notify(t("compare.no_model"), severity="warning")
            return
        self.app.push_screen(CompareSetup(info, self.compare_discover), self._compare_chosen)

    def _compare_chosen(self, choice: CompareChoice | None) -> None:
        if choice is None:
            return
        try:
            params_from(self.chat_settings)
        except SlmChatError as exc:
            self.notify(str(exc), title=t("compare.bad_settings"), severity="error")
            return
        self.app.push_screen(
            CompareScreen(self.engine, self.store, self.conv, self.chat_settings, choice),
            self.open_compared)

    async def open_compared(self, conv_id: int | None) -> None:
        """After a compare view: its conversation (with both replies) in the chat."""
        if conv_id is not None:
            await self.open_conversation(conv_id)
            self.sidebar_reload()
        self.prompt.focus()  # back to typing, wherever the view was opened from

    # --- attached files (widgets/attachments_bar.py, chat_files.py) ---

    def files_command(self, text: str) -> bool:
        """``/attach`` and ``/detach`` go to the attachments bar; True when ``text`` was
        one of them."""
        try:
            command = chat_files.files_command(text)
        except ValueError as exc:
            self.notify(f"{text.split()[0]}: {exc}", severity="error")
            return True
        if command is None:
            return False
        word, args = command
        bar = self.attachments_bar
        bar.attach(args) if word == "/attach" else bar.detach(args)
        return True

    def on_attachments_bar_changed(self, event: AttachmentsBar.Changed) -> None:
        event.stop()  # used in this session; saved when they change (a full disk)
        self._save_chat_settings(attachments=event.paths or None)

    def on_citations_open(self, event: Citations.Open) -> None:
        from slmchat.tui.screens.passage import PassageScreen

        chunk_text = None
        chunk_id = event.source.get("chunk_id")
        if isinstance(chunk_id, int):
            hit = self.doc_index().chunk(chunk_id)
            chunk_text = hit.text if hit is not None else None
        self.app.push_screen(PassageScreen(event.source, chunk_text))

    def action_focus_prompt_attach(self) -> None:
        self.prompt.set_text("/attach ")
        self.prompt.focus()

    # --- curating replies for training ---

    def _reply_target(self) -> MessageView | None:
        selected = self.log_view.selected_view
        if selected is not None and selected.role == "assistant" and selected.msg_id:
            return selected
        replies = [v for v in self.log_view.views() if v.role == "assistant" and v.msg_id]
        if not replies:
            self.notify(t("curation.no_reply"), severity="warning")
            return None
        return replies[-1]

    def _mark(self, rating: str | None) -> None:
        view = self._reply_target()
        if view is not None:
            try:
                self.notify(chat_files.mark(self.store, view, rating))
            except SlmChatError as exc:
                self.notify(str(exc), severity="warning")

    def action_mark_good(self) -> None:
        self._mark("good")

    def action_mark_bad(self) -> None:
        self._mark("bad")

    def action_clear_mark(self) -> None:
        self._mark(None)

    def action_edit_reply(self) -> None:
        view = self._reply_target()
        if view is not None and not self.generating:
            chat_files.edit_preferred(self.app, self.store, view)

    async def action_export_training(self, then_finetune: bool = False) -> None:
        try:
            report = chat_files.export_marked(self.store, self.doc_index)
        except (SlmChatError, OSError) as exc:
            self.notify(str(exc), title=t("train.export_title"), severity="warning")
            return
        self.notify(t("train.exported", conversations=t("train.conversations", n=report.rows),
                      replies=t("train.replies", n=report.trained_replies),
                      path=report.path), title=t("train.exported_title"))
        if then_finetune:  # the fine-tune panel, starting from this file
            self.post_message(PanelRequested("finetune", data_file=str(report.path)))

    async def action_finetune_marked(self) -> None:
        await self.action_export_training(then_finetune=True)

    # --- tool calls (tool_calls.py) ---

    def on_tools_problem(self, event: ToolsProblem) -> None:
        new = self.tool_calls.new_problems(event.problems)
        if new:
            self.notify("\n".join(new), title=t("tool.problems_title"), severity="warning",
                        timeout=20)

    async def on_tool_call_requested(self, event: ToolCallRequested) -> None:
        """A reply called a tool: ask the user (unless always allowed) before it runs."""
        view = self.log_view.view_for(event.msg_id)
        if view is not None:
            await view.show_tool_call(event.call)
        self.tool_calls.busy = True
        if self.tool_calls.allowed_always(event.call):
            await self.answer_tool_call(event, "always")
        else:
            self.app.push_screen(ToolConsent(event.call), partial(self._consent_given, event))

    def _consent_given(self, event: ToolCallRequested, answer: str | None) -> None:
        self.call_later(self.answer_tool_call, event, answer or "deny")

    async def answer_tool_call(self, event: ToolCallRequested, answer: str) -> None:
        """"once", "always" or "deny": recorded with the call; an allowed call runs."""
        consent = answer if answer in ("once", "always") else "denied"
        call = {**event.call, "consent": consent}
        if consent == "always":
            self.tool_calls.always.add(self.tool_calls.key(call))
        try:
            self.store.set_tool_call(event.msg_id, call)
        except StoreWriteError as exc:  # nothing runs that could not be recorded
            self.tool_calls.busy = False
            self.not_saved(exc, "tool.not_saved")
            return
        view = self.log_view.view_for(event.msg_id)
        if view is not None:
            await view.show_tool_call(call)
        if consent == "denied":
            self.tool_calls.busy = False
            self.notify(t("tool.denied", name=str(call.get("name"))))
            return
        self._run_tool(event.msg_id, call, event.chain)

    @work(thread=True, exclusive=True, group="tool")
    def _run_tool(self, msg_id: int, call: dict[str, Any], chain: int) -> None:
        done = self.tool_calls.run(call)
        try:
            self.store.set_tool_call(msg_id, done)
        except StoreWriteError as exc:
            done["not_saved"] = str(exc)
        self.post_message(ToolCallDone(msg_id, done, chain))

    async def on_tool_call_done(self, event: ToolCallDone) -> None:
        view = self.log_view.view_for(event.msg_id)
        if view is not None:
            await view.show_tool_call(event.call)
        self.tool_calls.busy = False
        if event.call.get("not_saved"):
            self.notify(t("tool.result_not_saved", error=event.call["not_saved"]),
                        title=t("chat.not_saved_title"), severity="error", timeout=30)
            return
        if self.conv is None or view is None:  # the conversation was left meanwhile
            return
        self.tool_calls.chain = event.chain + 1
        await self._start_reply()  # the model goes on, reading the result

    def action_toggle_tools(self) -> None:
        """Tools on or off for this conversation (kept in its settings)."""
        if not self.tool_calls.configured:
            self.notify(t("tool.no_servers"), severity="warning")
            return
        off = not self.chat_settings.get("tools_off")
        if self._save_chat_settings(tools_off=True if off else None):
            self.notify(t("tool.now_off" if off else "tool.now_on"))

    # --- the sidebar, the settings panel and the docked panels (side_panels.py) ---

    def action_toggle_sidebar(self) -> None:
        self.sidebar.display = not self.sidebar.display

    def action_search(self) -> None:
        self.sidebar.focus_search()

    def action_toggle_settings(self) -> None:
        panel = self.settings_panel
        if panel.display:
            self._close_settings()
            return
        self.close_panel()  # one side panel at a time
        self.add_class("-settings-open")
        panel.open_with(self.chat_settings)
        # Below 130 columns the sidebar makes way, so the chat keeps a readable width.
        sidebar = self.sidebar
        self._sidebar_before_settings = sidebar.display
        if self.size.width < 130:
            sidebar.display = False

    def _close_settings(self) -> None:
        self.settings_panel.display = False
        self.remove_class("-settings-open")
        if self._sidebar_before_settings is not None:
            self.sidebar.display = self._sidebar_before_settings
            self._sidebar_before_settings = None
        self.prompt.focus()

    async def on_settings_panel_tint_changed(self, event: SettingsPanel.TintChanged) -> None:
        self.tint_drafts = event.on
        await self.log_view.set_tint(event.on)
        self.post_message(TintDraftsChanged(event.on))  # the app keeps it in settings.toml

    def on_settings_panel_saved(self, event: SettingsPanel.Saved) -> None:
        self.chat_settings = {**dict(event.values), **self.file_settings()}
        if not self._save_chat_settings():  # the panel stays open: Save again once there is room
            return
        where = "chat.saved_here"
        if event.as_default:
            self.defaults = dict(event.values)
            self.post_message(GenerationDefaultsSaved(dict(event.values)))
            where = "chat.saved_default"
        self._close_settings()
        self.notify(t(where))

    def can_dock(self) -> bool:
        return self.size.width >= DOCK_MIN_WIDTH

    async def toggle_panel(self, kind: str, data_file: str | None = None) -> None:
        """Open ``kind`` docked and focus it; pressed again, the key moves the focus
        between the panel and the prompt (the panel stays: a fine-tune goes on in view
        while you chat). Esc in the panel closes it. ``data_file``: the fine-tune
        panel's training file."""
        side = self.side
        if side.kind == kind:
            if data_file and kind == "finetune":
                from slmchat.tui.screens.finetune import FinetunePanel

                if isinstance(side.panel, FinetunePanel):  # it built it: the new file
                    side.panel.use_data_file(data_file)
            elif side.has_focus_within:
                self.prompt.focus()
            else:
                side.focus_panel()
            return
        if self.settings_panel.display:
            self._close_settings()
        sidebar = self.sidebar
        if self._sidebar_before_panel is None:
            self._sidebar_before_panel = sidebar.display
        sidebar.display = self._sidebar_before_panel and self.size.width >= SIDEBAR_MIN_WIDTH
        panel = build_panel(kind, self.engine, self.settings, self.discover_fn, self.runs_root,
                            data_file)
        await side.open(kind, panel)
        self.query_one(FinetuneItem).panel_open = kind == "finetune"
        self.call_after_refresh(side.focus_panel)

    def close_panel(self) -> None:
        side = self.side
        if side.kind is None:
            return
        side.close()
        if self._sidebar_before_panel is not None:
            self.sidebar.display = self._sidebar_before_panel
            self._sidebar_before_panel = None
        self.prompt.focus()
        self.query_one(FinetuneItem).panel_open = False

    def on_models_panel_chosen(self, event: Any) -> None:
        event.stop()
        self.close_panel()
        self.post_message(LoadModelRequested(event.spec))

    def on_models_panel_closed(self, event: Any) -> None:
        event.stop()
        self.close_panel()

    def on_finetune_panel_use_model(self, event: Any) -> None:
        event.stop()
        self.close_panel()
        self.post_message(LoadModelRequested(event.spec))

    def on_finetune_panel_closed(self, event: Any) -> None:
        event.stop()
        self.close_panel()

    def on_finetune_item_clicked(self, event: FinetuneItem.Clicked) -> None:
        event.stop()
        self.post_message(PanelRequested("finetune"))

    async def on_finetune_item_run_ended(self, event: FinetuneItem.RunEnded) -> None:
        event.stop()
        await self.announce_end(event.summary)

    async def announce_end(self, summary: RunSummary) -> None:
        """A fine-tune run ended: say so; a finished one offers its model."""
        text, made_model = run_end_notice(summary)
        if not made_model:
            self.notify(text, severity="error", timeout=20)
            return
        self.notify(text, title=t("ft.done_title"), timeout=15)
        await self.offers.offer("finetune", text,
                                [(t("ft.use"), "use"), (t("ft.compare"), "compare")], summary)

    def on_offer_bar_chosen(self, event: OfferBar.Chosen) -> None:
        """The offer above the prompt was answered: the pressed button is gone with the
        bar, so typing goes to the prompt again; then what was chosen."""
        event.stop()
        self.prompt.focus()
        if event.kind == "finetune" and event.action == "use":
            self.post_message(LoadModelRequested(ModelSpec(path=event.payload.out)))
        elif event.kind == "finetune" and event.action == "compare":
            self.post_message(CompareRunRequested(event.payload))
        elif event.kind == "switch-back" and isinstance(event.payload, ModelSpec) \
                and event.action == "switch":
            self.post_message(LoadModelRequested(event.payload))
