"""Tool calls from the chat: the tools of the user's MCP servers (``[[mcp]]`` in
settings.toml) are offered to the model, and a call runs only after the user allows it.

1. A new reply may be offered the tools when servers are configured and the
   conversation has not turned them off (the palette's "Tools on/off"). The worker lists
   them (the servers start on first use; the list is kept) and decodes under the
   "call or text" constraint (engine/generation/toolcalls.py), so a call is always
   well formed and its arguments follow the tool's schema.
2. A reply that is a call is stored as the message's ``tool_call`` (its raw JSON is not
   kept as text) and shown as a collapsible block; a dialog asks: allow once, always
   allow this tool (until the app quits), or deny. Denied: nothing runs, the turn ends.
3. Allowed: a thread worker runs it; the result is stored with the call, and the model
   continues in a new reply that reads the call and its result. A turn makes at most
   ``MAX_CHAIN`` calls; the reply after the last is offered no tools.

``ToolCallActions`` sits between FilesAndTraining and the chat screen; the chat screen
calls ``plan_tool_job`` (UI thread), ``tools_for`` and ``tool_call_of`` (its worker).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from textual import work

from slmchat.engine.generation.toolcalls import call_id, read_call, with_tools
from slmchat.engine.mcp.client import McpTool, ToolResult
from slmchat.engine.store.store import StoreWriteError
from slmchat.errors import SlmChatError
from slmchat.i18n import t
from slmchat.tui.messages import ToolCallDone, ToolCallRequested, ToolsProblem
from slmchat.tui.screens.chat_files import FilesAndTraining
from slmchat.tui.screens.dialogs import ToolConsent

if TYPE_CHECKING:
    from slmchat.engine.generation.constraints import Constraint
    from slmchat.engine.generation.prompting import ChatMessage
    from slmchat.engine.mcp.client import ToolHubLike
    from slmchat.tui.generation import ReplyJob
    from slmchat.tui.widgets.message_view import MessageView

MAX_CHAIN = 4  # tool calls in one turn before the model must answer in text


class ToolCallActions(FilesAndTraining):
    tool_hub: ToolHubLike | None = None  # set by the app; None or no servers: no tools

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tools_always: set[str] = set()  # "server.tool" keys allowed until the app quits
        self.tool_busy = False  # a call waits for the user's answer or runs
        self._tool_chain = 0  # calls this turn before the next reply
        self._problems_shown: set[str] = set()

    async def _start_reply(self, continue_view: MessageView | None = None) -> None:
        raise NotImplementedError  # the chat screen's

    @property
    def generating(self) -> bool:
        return self.job is not None or self.tool_busy

    @property
    def tools_on(self) -> bool:
        """Tools are configured and this conversation has not turned them off."""
        hub = self.tool_hub
        return hub is not None and bool(hub.servers) and not self.chat_settings.get("tools_off")

    def file_settings(self) -> dict[str, Any]:
        extra = {"tools_off": True} if self.chat_settings.get("tools_off") else {}
        return {**super().file_settings(), **extra}

    # --- a reply (UI thread, then its worker) ---

    def plan_tool_job(self, job: ReplyJob) -> None:
        """Whether ``job`` may be offered the tools (a continued reply is not: its
        constraint would start in the middle of the text)."""
        job.tool_chain, self._tool_chain = self._tool_chain, 0
        job.offer_tools = self.tools_on and not job.continue_last and job.tool_chain < MAX_CHAIN

    def tools_for(self, job: ReplyJob) -> tuple[list[ChatMessage], Constraint | None]:
        """Worker thread: the job's messages with the tools described, and the call-or-text
        constraint; the messages unchanged and None when none are offered."""
        hub = self.tool_hub
        if not job.offer_tools or hub is None:
            return job.messages, None
        try:
            listing = hub.list_tools()
            plan = listing.plan("auto")
            constraint = plan.constraint() if plan is not None else None
        except SlmChatError as exc:  # McpError, or a combined grammar that does not compile
            self.post_message(ToolsProblem((str(exc),)))
            return job.messages, None
        if listing.problems:
            self.post_message(ToolsProblem(listing.problems))
        if plan is None:
            return job.messages, None
        job.tools, job.tool_keys = plan, tuple(tool.key for tool in listing.tools)
        return with_tools(job.messages, plan), constraint

    def tool_call_of(self, job: ReplyJob, text: str, prov: dict[str, Any]) -> dict[str, Any] | None:
        """Worker thread: the call ``text`` makes (None: a plain reply); recorded in the
        reply's provenance."""
        if job.tools is None or self.tool_hub is None:
            return None
        found = read_call(text, job.tools)
        tool = self.tool_hub.list_tools().find(found[0]) if found is not None else None
        if found is None or tool is None:
            return None
        prov.setdefault("tools", {"offered": list(job.tool_keys)})["called"] = tool.key
        return {"id": call_id(), "server": tool.server, "name": tool.name, "arguments": found[1]}

    def on_tools_problem(self, event: ToolsProblem) -> None:
        new = [p for p in event.problems if p not in self._problems_shown]
        self._problems_shown.update(new)
        if new:
            self.notify("\n".join(new), title=t("tool.problems_title"), severity="warning",
                        timeout=20)

    # --- the user's answer ---

    async def on_tool_call_requested(self, event: ToolCallRequested) -> None:
        view = self.log_view.view_for(event.msg_id)
        if view is not None:
            await view.show_tool_call(event.call)
        self.tool_busy = True
        key = f"{event.call.get('server')}.{event.call.get('name')}"
        if key in self.tools_always:
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
            self.tools_always.add(f"{call.get('server')}.{call.get('name')}")
        try:
            self.store.set_tool_call(event.msg_id, call)
        except StoreWriteError as exc:  # nothing runs that could not be recorded
            self.tool_busy = False
            self.not_saved(exc, "tool.not_saved")
            return
        view = self.log_view.view_for(event.msg_id)
        if view is not None:
            await view.show_tool_call(call)
        if consent == "denied":
            self.tool_busy = False
            self.notify(t("tool.denied", name=str(call.get("name"))))
            return
        self._run_tool(event.msg_id, call, event.chain)

    @work(thread=True, exclusive=True, group="tool")
    def _run_tool(self, msg_id: int, call: dict[str, Any], chain: int) -> None:
        hub = self.tool_hub
        try:
            if hub is None:
                raise SlmChatError(t("tool.no_servers"))
            result = hub.call(McpTool(str(call["server"]), str(call["name"])),
                              dict(call.get("arguments") or {}))
        except SlmChatError as exc:  # McpError: one line naming the server
            result = ToolResult(str(exc), is_error=True)
        except Exception as exc:  # never a traceback in the chat
            result = ToolResult(f"{type(exc).__name__}: {exc}", is_error=True)
        done = {**call, "result": result.text, "is_error": result.is_error}
        try:
            self.store.set_tool_call(msg_id, done)
        except StoreWriteError as exc:
            done["not_saved"] = str(exc)
        self.post_message(ToolCallDone(msg_id, done, chain))

    async def on_tool_call_done(self, event: ToolCallDone) -> None:
        view = self.log_view.view_for(event.msg_id)
        if view is not None:
            await view.show_tool_call(event.call)
        self.tool_busy = False
        if event.call.get("not_saved"):
            self.notify(t("tool.result_not_saved", error=event.call["not_saved"]),
                        title=t("chat.not_saved_title"), severity="error", timeout=30)
            return
        if self.conv is None or view is None:  # the conversation was left meanwhile
            return
        self._tool_chain = event.chain + 1
        await self._start_reply()  # the model goes on, reading the result

    def action_toggle_tools(self) -> None:
        """Tools on or off for this conversation (kept in its settings)."""
        if self.tool_hub is None or not self.tool_hub.servers:
            self.notify(t("tool.no_servers"), severity="warning")
            return
        off = not self.chat_settings.get("tools_off")
        self.chat_settings = {**self.chat_settings, "tools_off": True}
        if not off:
            self.chat_settings.pop("tools_off")
        if self.conv is not None:
            try:
                self.store.set_conversation_settings(self.conv.id, self.chat_settings)
            except StoreWriteError as exc:
                self.not_saved(exc, "chat.settings_not_saved")
                return
        self.notify(t("tool.now_off" if off else "tool.now_on"))
