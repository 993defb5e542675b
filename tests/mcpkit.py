"""A tiny stdio MCP server for the tests, written with the SDK's MCPServer (FastMCP in
mcp 1.x): add, a tool that fails, one that kills its own process, a slow one, and a
counter that shows whether calls share one server process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from slmchat.engine.mcp.client import ServerSpec

SERVER = '''
import os
import sys
import time

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("tiny")
calls = 0


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def fail(reason: str) -> str:
    """Always fails with the reason given (a ToolError: the client sees the reason)."""
    raise ToolError(reason)


@server.tool()
def crash() -> str:
    """Ends the server process."""
    print("crashing on purpose", file=sys.stderr, flush=True)
    os._exit(3)


@server.tool()
def slow(seconds: float) -> str:
    """Sleeps, then answers."""
    time.sleep(seconds)
    return "done"


@server.tool()
def counter() -> int:
    """How many times it was called in this process."""
    global calls
    calls += 1
    return calls


if __name__ == "__main__":
    server.run()
'''


def write_server(folder: Path) -> Path:
    path = folder / "tiny_mcp_server.py"
    path.write_text(SERVER, encoding="utf-8")
    return path


def tiny_spec(folder: Path, name: str = "tiny", **kwargs: object) -> ServerSpec:
    """A ServerSpec that runs the tiny server with this interpreter (and this PYTHONPATH:
    the SDK passes a server only PATH, HOME and a few more)."""
    env = (("PYTHONPATH", os.environ["PYTHONPATH"]),) if os.environ.get("PYTHONPATH") else ()
    return ServerSpec(name, sys.executable, (str(write_server(folder)),), env=env,
                      **kwargs)  # type: ignore[arg-type]
