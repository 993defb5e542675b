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
import json
import signal
import socket
import threading
from collections.abc import Callable, Generator
from types import FrameType
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from slmchat.errors import InvalidParameterError
from slmchat.server.errors import error_body
from slmchat.server.state import HEADER_TIMEOUT_S, ServerState

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


class JsonH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with answers in the API's JSON shape where uvicorn
    writes plain text, and a bound on the time a client may take to send its headers.

    A malformed request (a bad Content-Length, TLS bytes on the plain port, a broken
    request line) gets a 400 JSON error in the shape of the path it seems to ask for.
    Headers that stop arriving (slowloris), or a connection that never sends a byte, are
    closed after ``header_timeout_s``, with a 408 JSON error when a request had begun.
    uvicorn times out only idle keep-alive connections."""

    header_timeout_s = HEADER_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head = b""  # the start of the request being received, for its path
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and len(self._head) < 256:
            self._head += data[:256]
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm_header_timer()  # armed once per request: slow bytes do not reset it
        else:
            self._head = b""
            self._disarm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self._head and self.conn.our_state is h11.IDLE:
            self._send_json(408, f"the request headers did not arrive within "
                                 f"{self.header_timeout_s:g} s")
        else:
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        self._send_json(400, f"invalid HTTP request: {msg.rstrip('.').lower()} (check the "
                             "request line, the headers and Content-Length; https:// needs "
                             "a proxy, this server speaks plain HTTP)")

    def _send_json(self, status: int, message: str) -> None:
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            self.transport.close()  # a response is already under way: just end it
            return
        parts = self._head.split(b" ", 2)
        path = parts[1].decode("latin-1") if len(parts) > 1 else ""
        body = json.dumps(error_body(path, status, message)).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close"),
                   (b"content-length", str(len(body)).encode())]
        try:
            self.transport.write(self.conn.send(h11.Response(
                status_code=status, headers=headers, reason=STATUS_REASONS.get(status, b""))))
            self.transport.write(self.conn.send(h11.Data(data=body)))
            self.transport.write(self.conn.send(h11.EndOfMessage()))
        except h11.LocalProtocolError:
            pass
        self.transport.close()


STATUS_REASONS = {400: b"Bad Request", 408: b"Request Timeout"}


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
    protocol = type("JsonH11Protocol", (JsonH11Protocol,), {
        "header_timeout_s": app.state.slm.config.header_timeout_s})
    config = uvicorn.Config(app, log_level=log_level, lifespan="off", http=protocol,
                            timeout_graceful_shutdown=GRACEFUL_S, server_header=False)
    return SlmServer(config, app.state.slm, on_started)


def serve(app: Any, sock: socket.socket, log_level: str = "info",
          on_started: Callable[[], None] | None = None) -> None:
    """Serve until a stop signal; return once open responses and generations ended."""
    server = make_server(app, sock, log_level, on_started)
    try:
        server.run(sockets=[sock])
    finally:
        for worker in list(server.state.workers):  # the loop is gone: stop any leftover
            worker.cancel.cancel()
        server.state.join_workers(GRACEFUL_S)
        sock.close()
