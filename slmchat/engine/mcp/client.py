"""The client side of the user's MCP servers: list their tools, call one.

``McpHub`` keeps one stdio connection per configured server, opened on first use (a
server may keep state between calls, as MCP servers expect) and closed by ``close()``.
The official SDK is asynchronous; the hub runs it on an event loop in a daemon thread of
its own, started with the first connection, and its methods are plain blocking calls
for the app's thread workers and the CLI. Every failure is one ``McpError`` line that
names the server: it does not start, does not answer in time, stops (with the last
line it wrote to stderr), or answers with a protocol error. A tool that fails in the
usual MCP way (``isError``) is a ``ToolResult`` with ``is_error`` set: the model reads it
like any result.

The server's stderr goes to a temporary file, never to the terminal (the app draws
there), and its environment is the SDK's short list of safe variables plus the ``env``
the user configured: API keys in the user's shell do not leak into every server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO, TypeVar

from slmchat.engine.generation.toolcalls import Tool, ToolPlan, result_for_model
from slmchat.errors import InvalidParameterError, SlmChatError

MAX_PAGES = 20  # tools/list pages read from one server
CLOSE_TIMEOUT_S = 10.0  # the SDK gives a server 2 s after stdin closes, then 2 s after SIGTERM

T = TypeVar("T")


class McpError(SlmChatError):
    """An MCP server could not do what was asked (one line, naming the server)."""


@dataclass(frozen=True)
class ServerSpec:
    """One ``[[mcp]]`` entry of settings.toml."""

    name: str
    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # added to the SDK's safe defaults (PATH, HOME, ...)
    cwd: str | None = None
    timeout_s: float = 60.0  # one tool call
    start_timeout_s: float = 30.0  # start, handshake and the tool list


@dataclass(frozen=True)
class McpTool:
    server: str
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object"})

    @property
    def key(self) -> str:
        """``server.tool``: what "always allow" remembers and provenance records."""
        return f"{self.server}.{self.name}"

    def as_tool(self) -> Tool:
        return Tool(self.name, self.description, self.parameters)


@dataclass(frozen=True)
class ToolResult:
    text: str
    is_error: bool = False

    def for_model(self) -> str:
        return result_for_model(self.text, self.is_error)


@dataclass(frozen=True)
class Listing:
    """The tools of every configured server, and one line per problem."""

    tools: tuple[McpTool, ...] = ()
    problems: tuple[str, ...] = ()

    def find(self, name: str) -> McpTool | None:
        return next((t for t in self.tools if t.name == name), None)

    def plan(self, choice: str = "auto") -> ToolPlan | None:
        """The tools as the model is offered them (None: there are none)."""
        return ToolPlan(tuple(t.as_tool() for t in self.tools), choice) if self.tools else None


class ToolHubLike(Protocol):
    """What the app needs of the tools: ``McpHub`` and the tests' fake."""

    @property
    def servers(self) -> tuple[str, ...]: ...

    def list_tools(self, refresh: bool = False) -> Listing: ...

    def call(self, tool: McpTool, arguments: dict[str, Any]) -> ToolResult: ...

    def close(self) -> None: ...


def one_line(exc: BaseException) -> str:
    """The innermost error of an exception (group), on one line."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


def result_text(result: Any) -> str:
    """A CallToolResult's content as text: text blocks as they are, other blocks named."""
    parts: list[str] = []
    for block in result.content or ():
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind == "resource":
            inner = block.resource
            parts.append(getattr(inner, "text", None) or f"[resource {inner.uri}]")
        elif kind == "resource_link":
            parts.append(f"[resource {block.uri}]")
        else:
            parts.append(f"[{kind or 'content'}]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)


class _Connection:
    """One server's session, held open by a task on the hub's loop."""

    def __init__(self, spec: ServerSpec) -> None:
        self.spec = spec
        self.session: Any = None
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._errlog: TextIO | None = None
        self._opening = asyncio.Lock()

    @property
    def label(self) -> str:
        return f"MCP server {self.spec.name!r}"

    async def open(self) -> Any:
        """The open session, started first when needed; one start at a time (a second
        caller waits for it instead of restarting the server under it)."""
        async with self._opening:
            return await self._open()

    async def _open(self) -> Any:
        if self.session is not None and self._task is not None and not self._task.done():
            return self.session
        await self.close()
        ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._stop = asyncio.Event()
        # The server's stderr, for the last line an error quotes; closed in close().
        self._errlog = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        self._task = asyncio.create_task(self._run(ready, self._stop, self._errlog))
        try:
            return await asyncio.wait_for(asyncio.shield(ready), self.spec.start_timeout_s)
        except TimeoutError:
            tail = self.stderr_tail()
            await self.close()
            if ready.done() and not ready.cancelled():
                ready.exception()  # the start's own error, superseded by this one
            raise McpError(f"{self.label} did not start within {self.spec.start_timeout_s:g} s"
                           f"{tail}") from None
        except McpError:
            await self.close()
            raise

    async def _run(self, ready: asyncio.Future[Any], stop: asyncio.Event, errlog: TextIO) -> None:
        from mcp import ClientSession, StdioServerParameters
        from mcp.client.stdio import stdio_client

        spec = self.spec
        params = StdioServerParameters(command=spec.command, args=list(spec.args),
                                       env=dict(spec.env) or None, cwd=spec.cwd)
        try:
            async with stdio_client(params, errlog=errlog) as (read, write), \
                    ClientSession(read, write) as session:
                await session.initialize()
                self.session = session
                ready.set_result(session)
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(McpError(f"{self.label} could not start: {one_line(exc)}"
                                             f"{self.stderr_tail()}"))
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self.session = None

    def stderr_tail(self) -> str:
        """" (<the server's last stderr line>)", or "" when it wrote none. Read from the
        file's end (the server writes to it directly; a chatty one makes it large)."""
        log = self._errlog
        if log is None or log.closed:
            return ""
        try:
            fd = log.fileno()
            size = os.fstat(fd).st_size
            text = os.pread(fd, 4000, max(0, size - 4000)).decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return f" ({lines[-1][:200]})" if lines else ""

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            if self.session is None:  # still starting: nothing would read the stop event
                task.cancel()
            elif self._stop is not None:
                self._stop.set()
            # On a timeout wait_for cancels the task; the SDK then kills the process tree.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, CLOSE_TIMEOUT_S)
        self.session = None
        if self._errlog is not None:
            self._errlog.close()
            self._errlog = None


class McpHub:
    """The configured servers. Thread-safe; inert (no thread, no process) until used."""

    def __init__(self, specs: Sequence[ServerSpec]) -> None:
        self.specs = tuple(specs)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._conns: dict[str, _Connection] = {}
        self._listing: Listing | None = None

    @property
    def servers(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.specs)

    @property
    def started(self) -> bool:
        """Whether the hub's loop thread runs (only once a server was used)."""
        return self._thread is not None

    # --- the loop thread ---

    def _submit(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        with self._lock:
            if self._loop is None:
                # The SDK logs transport tracebacks; the one-line McpError says what matters.
                logging.getLogger("mcp").setLevel(logging.CRITICAL)
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever,
                                                name="slmchat-mcp", daemon=True)
                self._thread.start()
            loop = self._loop
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise McpError(f"the MCP servers did not answer within {timeout:g} s") from None

    def _conn(self, spec: ServerSpec) -> _Connection:
        return self._conns.setdefault(spec.name, _Connection(spec))

    def _spec(self, server: str) -> ServerSpec:
        for spec in self.specs:
            if spec.name == server:
                return spec
        raise McpError(f"no MCP server named {server!r} is configured")

    # --- listing ---

    def list_tools(self, refresh: bool = False) -> Listing:
        """Every server's tools (servers are started on the first call; the list is kept
        until ``refresh``). A server that fails adds a problem line, the others still count."""
        if not self.specs:
            return Listing()
        if self._listing is not None and not refresh:
            return self._listing
        wait = max(s.start_timeout_s for s in self.specs) * 2 + 5
        found = self._submit(self._list_all(), wait)
        tools: list[McpTool] = []
        problems: list[str] = []
        for server_tools, problem in found:
            if problem:
                problems.append(problem)
            for tool in server_tools:
                if (problem := _tool_problem(tool, tools)) is not None:
                    problems.append(problem)
                else:
                    tools.append(tool)
        self._listing = Listing(tuple(tools), tuple(problems))
        return self._listing

    async def _list_all(self) -> list[tuple[list[McpTool], str | None]]:
        return list(await asyncio.gather(*(self._list_one(s) for s in self.specs)))

    async def _list_one(self, spec: ServerSpec) -> tuple[list[McpTool], str | None]:
        conn = self._conn(spec)
        try:
            session = await conn.open()
            tools: list[McpTool] = []
            cursor: str | None = None
            for _ in range(MAX_PAGES):
                page = await asyncio.wait_for(_list_page(session, cursor), spec.start_timeout_s)
                tools += [McpTool(spec.name, t.name, t.description or "",
                                  dict(t.input_schema or {"type": "object"})) for t in page.tools]
                cursor = page.next_cursor
                if not cursor:
                    break
            return tools, None
        except McpError as exc:
            return [], str(exc)
        except TimeoutError:
            return [], f"{conn.label} did not list its tools within {spec.start_timeout_s:g} s"
        except Exception as exc:
            await conn.close()
            return [], f"{conn.label}: {one_line(exc)}{conn.stderr_tail()}"

    # --- calling ---

    def call(self, tool: McpTool, arguments: dict[str, Any]) -> ToolResult:
        """Run ``tool``; McpError (one line) when its server fails, a ToolResult with
        ``is_error`` when the tool reports an error."""
        spec = self._spec(tool.server)
        return self._submit(self._call(spec, tool.name, arguments),
                            spec.start_timeout_s + spec.timeout_s + CLOSE_TIMEOUT_S)

    async def _call(self, spec: ServerSpec, name: str, arguments: dict[str, Any]) -> ToolResult:
        from mcp import MCPError
        from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        conn = self._conn(spec)
        session = await conn.open()
        try:
            result = await session.call_tool(name, arguments, read_timeout_seconds=spec.timeout_s)
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                tail = conn.stderr_tail()
                await conn.close()  # the next call starts it again
                raise McpError(f"{conn.label} stopped during {name}{tail}") from None
            if exc.code == REQUEST_TIMEOUT:
                raise McpError(f"{conn.label} did not answer {name} within {spec.timeout_s:g} s") from None
            raise McpError(f"{conn.label}: {name}: {one_line(exc)}") from None
        except Exception as exc:
            raise McpError(f"{conn.label}: {name}: {one_line(exc)}") from None
        return ToolResult(result_text(result), bool(result.is_error))

    # --- closing ---

    def close(self) -> None:
        """Stop every server this hub started, and its loop thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        conns, self._conns = list(self._conns.values()), {}
        future = asyncio.run_coroutine_threadsafe(_close_all(conns), loop)
        with contextlib.suppress(Exception):
            future.result(CLOSE_TIMEOUT_S + 2)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        if not thread.is_alive():
            loop.close()
        self._listing = None


async def _list_page(session: Any, cursor: str | None) -> Any:
    if cursor is None:
        return await session.list_tools()
    from mcp.types import PaginatedRequestParams

    return await session.list_tools(params=PaginatedRequestParams(cursor=cursor))


async def _close_all(conns: list[_Connection]) -> None:
    await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)


def _tool_problem(tool: McpTool, kept: list[McpTool]) -> str | None:
    """Why ``tool`` cannot be offered: a name another server's tool has, or a parameters
    schema that does not compile into a constraint."""
    other = next((t for t in kept if t.name == tool.name), None)
    if other is not None:
        return (f"MCP server {tool.server!r}: tool {tool.name!r} left out: server "
                f"{other.server!r} has a tool of the same name")
    try:
        ToolPlan((tool.as_tool(),), "required").constraint()
    except InvalidParameterError as exc:
        return f"MCP server {tool.server!r}: tool {tool.name!r} left out: {exc}"
    return None
