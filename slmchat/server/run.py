"""Bind the socket, run uvicorn, and stop cleanly on Ctrl+C or SIGTERM.

The socket is bound before the model loads, so a busy port fails in a second rather
than after the load, and a non-loopback address without an API key never binds at all.
On a stop signal the server refuses new requests (503), stops the running generation at
its next token (its stream ends with a final event and ``[DONE]`` / ``done: true``),
lets the responses finish, and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import socket
import threading
from collections.abc import Callable, Generator
from types import FrameType
from typing import Any

import uvicorn

from slmchat.errors import InvalidParameterError
from slmchat.server.flow import ServerState

GRACEFUL_S = 10  # after a stop signal, responses still open after this are cut


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_exposure(host: str, api_key: str | None) -> None:
    """A non-loopback address serves the network: only with an API key."""
    if not is_loopback(host) and not api_key:
        raise InvalidParameterError(
            f"--host {host} is reachable from other machines; add --api-key KEY (or set "
            "SLMCHAT_API_KEY) to serve it, or keep the default 127.0.0.1")


def bind(host: str, port: int) -> socket.socket:
    """A bound (not yet listening) TCP socket; a busy or bad address is one clear line."""
    if not 0 <= port <= 65535:
        raise InvalidParameterError(f"--port must be in 0..65535, got {port}")
    name = "127.0.0.1" if host == "localhost" else host.strip("[]")
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(name).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((name, port))
    except OSError as exc:
        sock.close()
        raise InvalidParameterError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


class SlmServer(uvicorn.Server):
    """uvicorn's server, plus: stop generations on a signal, exit 0 afterwards."""

    def __init__(self, config: uvicorn.Config, state: ServerState,
                 on_started: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self.state = state
        self.on_started = on_started
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)
        if self.started and self.on_started is not None:
            self.on_started()

    def stop(self) -> None:
        """Begin a graceful stop (thread-safe; also what a signal does)."""
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self.state.begin_shutdown)
        self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl+C: stop waiting for open responses
        self.stop()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn re-raises the signal after shutting down (exit 130/143); a stop we
        # handled is a normal exit here.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def make_server(app: Any, sock: socket.socket | None = None, log_level: str = "info",
                on_started: Callable[[], None] | None = None) -> SlmServer:
    config = uvicorn.Config(app, log_level=log_level, lifespan="off",
                            timeout_graceful_shutdown=GRACEFUL_S, server_header=False)
    return SlmServer(config, app.state.slm, on_started)


def serve(app: Any, sock: socket.socket, log_level: str = "info",
          on_started: Callable[[], None] | None = None) -> None:
    """Serve until a stop signal; return once open responses and generations ended."""
    server = make_server(app, sock, log_level, on_started)
    try:
        server.run(sockets=[sock])
    finally:
        for gen in list(server.state.generations):  # the loop is gone: stop any leftover
            gen.cancel.cancel()
        server.state.join_generations(GRACEFUL_S)
        sock.close()
