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

``ToolCalls`` holds what the chat needs between replies (the hub, the tools allowed
until the app quits, the calls made this turn); the chat screen calls ``plan`` (UI
thread), ``tools_for`` and ``call_of`` (its reply worker), ``run`` (its tool worker),
and asks the user (dialogs.ToolConsent) in between.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from slmchat.engine.generation.toolcalls import call_id, read_call, with_tools
from slmchat.engine.mcp.client import McpTool, ToolResult
from slmchat.errors import SlmChatError
from slmchat.i18n import t
from slmchat.tui.messages import ToolsProblem

if TYPE_CHECKING:
    from textual.message import Message

    from slmchat.engine.generation.constraints import Constraint
    from slmchat.engine.generation.prompting import ChatMessage
    from slmchat.engine.mcp.client import ToolHubLike
    from slmchat.tui.generation import ReplyJob

MAX_CHAIN = 4  # tool calls in one turn before the model must answer in text


class ToolCalls:
    """The chat's tool calls: which replies are offered the tools, the call a reply
    makes, running an allowed one. No Textual here: the worker thread posts through
    ``post`` (the chat screen's ``post_message``)."""

    def __init__(self, hub: ToolHubLike | None = None) -> None:
        self.hub = hub  # set by the app; None or no servers: no tools
        self.always: set[str] = set()  # "server.tool" keys allowed until the app quits
        self.busy = False  # a call waits for the user's answer or runs
        self.chain = 0  # calls this turn before the next reply
        self._problems_shown: set[str] = set()

    @property
    def configured(self) -> bool:
        return self.hub is not None and bool(self.hub.servers)

    def plan(self, job: ReplyJob, tools_on: bool) -> None:
        """Whether ``job`` may be offered the tools (a continued reply is not: its
        constraint would start in the middle of the text)."""
        job.tool_chain, self.chain = self.chain, 0
        job.offer_tools = tools_on and self.configured and not job.continue_last \
            and job.tool_chain < MAX_CHAIN

    def tools_for(self, job: ReplyJob, post: Callable[[Message], Any]
                  ) -> tuple[list[ChatMessage], Constraint | None]:
        """Worker thread: the job's messages with the tools described, and the call-or-text
        constraint; the messages unchanged and None when none are offered."""
        hub = self.hub
        if not job.offer_tools or hub is None:
            return job.messages, None
        try:
            listing = hub.list_tools()
            plan = listing.plan("auto")
            constraint = plan.constraint() if plan is not None else None
        except SlmChatError as exc:  # McpError, or a combined grammar that does not compile
            post(ToolsProblem((str(exc),)))
            return job.messages, None
        if listing.problems:
            post(ToolsProblem(listing.problems))
        if plan is None:
            return job.messages, None
        job.tools, job.tool_keys = plan, tuple(tool.key for tool in listing.tools)
        return with_tools(job.messages, plan), constraint

    def call_of(self, job: ReplyJob, text: str, prov: dict[str, Any]) -> dict[str, Any] | None:
        """Worker thread: the call ``text`` makes (None: a plain reply); recorded in the
        reply's provenance."""
        if job.tools is None or self.hub is None:
            return None
        found = read_call(text, job.tools)
        tool = self.hub.list_tools().find(found[0]) if found is not None else None
        if found is None or tool is None:
            return None
        prov.setdefault("tools", {"offered": list(job.tool_keys)})["called"] = tool.key
        return {"id": call_id(), "server": tool.server, "name": tool.name, "arguments": found[1]}

    def new_problems(self, problems: tuple[str, ...]) -> list[str]:
        """The problems not shown yet this session (each is shown once)."""
        new = [p for p in problems if p not in self._problems_shown]
        self._problems_shown.update(new)
        return new

    @staticmethod
    def key(call: dict[str, Any]) -> str:
        return f"{call.get('server')}.{call.get('name')}"

    def allowed_always(self, call: dict[str, Any]) -> bool:
        return self.key(call) in self.always

    def run(self, call: dict[str, Any]) -> dict[str, Any]:
        """Worker thread: run an allowed call; the call with its result (never raises)."""
        hub = self.hub
        try:
            if hub is None:
                raise SlmChatError(t("tool.no_servers"))
            result = hub.call(McpTool(str(call["server"]), str(call["name"])),
                              dict(call.get("arguments") or {}))
        except SlmChatError as exc:  # McpError: one line naming the server
            result = ToolResult(str(exc), is_error=True)
        except Exception as exc:  # never a traceback in the chat
            result = ToolResult(f"{type(exc).__name__}: {exc}", is_error=True)
        return {**call, "result": result.text, "is_error": result.is_error}
