"""Tools from the user's MCP servers (stdio only), for tool calls in the chat.

Nothing here starts a process or a thread until a configured server is first used:
with no ``[[mcp]]`` in settings.toml the hub is empty and inert.
"""
