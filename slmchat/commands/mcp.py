"""``slmchat mcp list|call``: the MCP servers configured in settings.toml (``[[mcp]]``).

``list`` starts each enabled server, lists its tools and stops it again; a server that
fails is one line, and the exit status is 1 when any did. ``call`` runs one tool with
JSON arguments, to try a server outside the chat. With no servers configured nothing
is started.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from slmchat.errors import InvalidParameterError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mcp", help="list the MCP servers in settings.toml and their tools",
                       description="The MCP servers configured as [[mcp]] tables in "
                                   "settings.toml: their tools, or one tool run by hand. The "
                                   "chat offers their tools to the model and runs a call only "
                                   "after you allow it.")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    ls = actions.add_parser("list", help="start each server, list its tools (the default)")
    ls.add_argument("--json", action="store_true", help="print JSON")
    call = actions.add_parser("call", help="run one tool: SERVER TOOL [JSON arguments]")
    call.add_argument("server")
    call.add_argument("tool")
    call.add_argument("arguments", nargs="?", default="{}", help='e.g. \'{"a": 2, "b": 3}\'')
    p.set_defaults(func=run, action="list", json=False)


def run(args: argparse.Namespace) -> int:
    from slmchat.config import load_settings, settings_path
    from slmchat.engine.mcp.client import McpHub

    settings, problem = load_settings()
    if problem:
        print(f"slmchat: warning: {problem}", file=sys.stderr)
    hub = McpHub(settings.mcp_servers())
    try:
        if args.action == "call":
            return _call(hub, args)
        return _list(hub, settings, str(settings_path()), args.json)
    finally:
        hub.close()


def _list(hub: Any, settings: Any, path: str, as_json: bool) -> int:
    listing = hub.list_tools()
    if as_json:
        print(json.dumps({"servers": [{"name": s.name, "command": s.command, "args": s.args,
                                       "enabled": s.enabled} for s in settings.mcp],
                          "tools": [{"server": t.server, "name": t.name,
                                     "description": t.description, "parameters": t.parameters}
                                    for t in listing.tools],
                          "problems": list(listing.problems)}, indent=2, ensure_ascii=False))
        return 1 if listing.problems else 0
    if not settings.mcp:
        print(f"No MCP servers configured. Add one to {path}, e.g.:\n\n"
              '[[mcp]]\nname = "files"\ncommand = "npx"\n'
              'args = ["-y", "@modelcontextprotocol/server-filesystem", "/home/me/notes"]')
        return 0
    for server in settings.mcp:
        command = " ".join([server.command, *server.args])
        state = "" if server.enabled else "  (disabled)"
        print(f"{server.name}: {command}{state}")
        for tool in (t for t in listing.tools if t.server == server.name):
            about = tool.description.strip().splitlines()[0] if tool.description.strip() else ""
            print(f"  {tool.name}" + (f"  {about[:90]}" if about else ""))
    for line in listing.problems:
        print(f"problem: {line}")
    return 1 if listing.problems else 0


def _call(hub: Any, args: argparse.Namespace) -> int:
    from slmchat.engine.mcp.client import McpError

    try:
        arguments = json.loads(args.arguments)
    except ValueError as exc:
        raise InvalidParameterError(f"the arguments are not JSON: {exc}") from None
    if not isinstance(arguments, dict):
        raise InvalidParameterError('the arguments must be a JSON object, e.g. \'{"a": 2}\'')
    listing = hub.list_tools()
    tool = next((t for t in listing.tools if t.server == args.server and t.name == args.tool), None)
    if tool is None:
        known = next((p for p in listing.problems if repr(args.server) in p), None)
        raise McpError(known or f"MCP server {args.server!r} has no tool {args.tool!r} "
                                f"(see slmchat mcp list)")
    result = hub.call(tool, arguments)
    print(result.text)
    return 1 if result.is_error else 0
