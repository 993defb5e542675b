"""A live ``slmchat serve`` app in a thread on a free loopback port, for the client tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from slmchat.engine.session import EngineLike
from slmchat.server.app import build_app
from slmchat.server.catalog import Discover
from slmchat.server.convlog import ConversationLog
from slmchat.server.http_server import SlmServer, bind, make_server
from slmchat.server.state import ServerConfig, ServerState

# The prompt the client tests send the tiny model (test_openai.py, test_ollama.py).
HELLO = [{"role": "user", "content": "The quick brown fox"}]


@dataclass
class Live:
    url: str
    port: int
    app: Any
    server: SlmServer

    @property
    def state(self) -> ServerState:
        state: ServerState = self.app.state.slm
        return state


@contextmanager
def live_server(engine: EngineLike, config: ServerConfig | None = None,
                log_store: ConversationLog | None = None,
                discover: Discover | None = None) -> Iterator[Live]:
    app = build_app(engine, config or ServerConfig(), log_store,
                    discover=discover or (lambda: []))
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = make_server(app, sock, log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name="test-server")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield Live(f"http://127.0.0.1:{port}", port, app, server)
    finally:
        server.stop()
        thread.join(30)
        sock.close()
        assert not thread.is_alive(), "the server thread did not stop"
