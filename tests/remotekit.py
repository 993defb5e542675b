"""A stub OpenAI-style server on loopback that misbehaves on purpose, for the remote
runtime's tests: the model asked for picks the behaviour.

- ``ok``: streams ``Hello from the stub`` in 4 events, usage and a system_fingerprint.
- ``unauthorized`` / any model when ``key`` is set and the request lacks it: 401.
- ``busy``: 429 with Retry-After. ``broken``: 500 with a JSON error.
- ``hang``: accepts the request and sends nothing until the test ends (or 30 s).
- ``drop``: streams two events, then closes the connection mid-body.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODELS = ("ok", "unauthorized", "busy", "broken", "hang", "drop")
OK_PIECES = ("Hello", " from", " the", " stub")


@dataclass
class Stub:
    url: str
    key: str | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


def _event(data: Any) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


def _chunk(payload: bytes) -> bytes:
    return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"


def _handler(stub: Stub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            if stub.key is None:
                return True
            return self.headers.get("Authorization") == f"Bearer {stub.key}"

        def do_GET(self) -> None:
            if not self._authorized():
                self._json(401, {"error": {"message": "Incorrect API key provided"}})
                return
            if self.path.rstrip("/") == "/v1/models":
                self._json(200, {"object": "list", "data": [
                    {"id": m, "object": "model", "owned_by": "stub"} for m in MODELS]})
                return
            self._json(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            stub.requests.append({"path": self.path, "body": body,
                                  "auth": self.headers.get("Authorization")})
            model = body.get("model")
            if not self._authorized() or model == "unauthorized":
                self._json(401, {"error": {"message": "Incorrect API key provided"}})
            elif model == "busy":
                self._json(429, {"error": {"message": "Rate limit reached"}},
                           {"Retry-After": "7"})
            elif model == "broken":
                self._json(500, {"error": {"message": "CUDA out of memory"}})
            elif model == "hang":
                stub.release.wait(30)
                self.close_connection = True
            elif model in ("ok", "drop"):
                self._stream(model)
            else:
                self._json(404, {"error": {"message": f"The model `{model}` does not exist."}})

        def _stream(self, model: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            pieces = OK_PIECES if model == "ok" else OK_PIECES[:2]
            for piece in pieces:
                self.wfile.write(_chunk(_event({
                    "id": "x", "object": "chat.completion.chunk", "model": model,
                    "system_fingerprint": "fp_stub42",
                    "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
                })))
                self.wfile.flush()
            if model == "drop":  # the connection dies mid-body: no final chunk
                self.close_connection = True
                self.connection.close()
                return
            self.wfile.write(_chunk(_event({
                "id": "x", "object": "chat.completion.chunk", "model": model,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})))
            self.wfile.write(_chunk(_event({
                "id": "x", "object": "chat.completion.chunk", "model": model, "choices": [],
                "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15}})))
            self.wfile.write(_chunk(b"data: [DONE]\n\n"))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    return Handler


class _StubHTTPServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (the remote test stops reading after its first token)
        # is not the stub's error: socketserver would print a traceback to stderr, where
        # the tests read the CLI's one-line errors.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


@contextmanager
def stub_server(key: str | None = None) -> Iterator[Stub]:
    stub = Stub(url="", key=key)
    server = _StubHTTPServer(("127.0.0.1", 0), _handler(stub))
    server.daemon_threads = True
    stub.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, name="remote-stub", daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        stub.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
