"""The Starlette app: routes of both protocols, auth, CORS, JSON error bodies.

``build_app(engine, config)`` is all a caller needs; the app keeps its ``ServerState``
in ``app.state.slm``. Every error, including unknown routes and unexpected failures,
is a JSON body in the shape of the protocol the path belongs to, never a traceback.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
from collections.abc import Mapping
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from slmchat.engine.session import EngineLike
from slmchat.server import ollama_api, openai_api
from slmchat.server.catalog import Discover
from slmchat.server.convlog import ConversationLog
from slmchat.server.errors import APIError, clip, error_body, shown
from slmchat.server.state import ServerConfig, ServerState

# --- errors, auth, routes -------------------------------------------------------------


def _json_error(request: Request, status: int, message: str, param: str | None = None,
                code: str | None = None, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(request.url.path, status, message, param, code),
                        status_code=status, headers=headers)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return _json_error(request, exc.status, exc.message, exc.param, exc.code, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    method, path = clip(request.method, 20), clip(request.url.path)
    message = {404: f"no such endpoint: {method} {path}",
               405: f"method {method} is not allowed on {path}"}.get(
        exc.status_code, str(exc.detail))
    return _json_error(request, exc.status_code, message, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return _json_error(request, 500, f"internal error: {type(exc).__name__}: {first}".rstrip(": "))


# --- Host and Origin (DNS rebinding, drive-by pages) ------------------------------------


def is_loopback_name(host: str) -> bool:
    """localhost, *.localhost, 127.0.0.0/8 or ::1 (brackets and case ignored)."""
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(value: str) -> str:
    """The name in a Host header value: ``[::1]:8000`` -> ``::1``, ``A.b:80`` -> ``a.b``."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else value
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def _wildcard(host: str) -> bool:
    name = host.strip("[]")
    if not name:
        return True
    try:
        return ipaddress.ip_address(name).is_unspecified
    except ValueError:
        return False


class HostGuard:
    """Refuse (403) requests addressed to a foreign Host or sent by a foreign web page.

    A page on attacker.example can make a browser send requests to 127.0.0.1 (any page
    can POST text/plain), and after DNS rebinding attacker.example itself points at
    127.0.0.1, so the page can read the replies too. Such requests carry
    ``Host: attacker.example`` and ``Origin: http://attacker.example``. Allowed: Hosts that
    are loopback names or addresses (any port) or this machine's host name, plus the
    address given with --host (all names when that is 0.0.0.0 or ::, where an API key is
    required anyway); Origins on a loopback host, or listed with --cors-origin. Requests
    without an Origin (curl, the official clients, other programs) are not web pages and
    pass."""

    def __init__(self, app: ASGIApp, bound_host: str = "127.0.0.1",
                 origins: tuple[str, ...] = ()) -> None:
        self.app = app
        self.any_host = _wildcard(bound_host)
        bound = host_name(bound_host if ":" not in bound_host.strip("[]")
                          else f"[{bound_host.strip('[]')}]")
        self.names = {bound, socket.gethostname().lower()} - {""}
        self.any_origin = "*" in origins
        self.origins = {o.strip().lower().rstrip("/") for o in origins}

    def host_ok(self, value: str) -> bool:
        if self.any_host:
            return True
        name = host_name(value)
        return is_loopback_name(name) or name in self.names

    def origin_ok(self, value: str) -> bool:
        origin = value.strip().lower().rstrip("/")
        if self.any_origin or origin in self.origins:
            return True
        try:
            parts = urlsplit(origin)
            return parts.scheme in ("http", "https") and is_loopback_name(parts.hostname or "")
        except ValueError:
            return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or []
        host = next((v for k, v in headers if k == b"host"), None)
        origin = next((v for k, v in headers if k == b"origin"), None)
        message = None
        if host is not None and not self.host_ok(host.decode("latin-1")):
            message = (f"requests addressed to {shown(host.decode('latin-1'))} are refused: "
                       "this server answers to its loopback address (start it with --host "
                       "to serve another address)")
        elif origin is not None and not self.origin_ok(origin.decode("latin-1")):
            message = (f"requests from web pages at {shown(origin.decode('latin-1'))} are "
                       "refused; allow a page with --cors-origin ORIGIN")
        if message is None:
            await self.app(scope, receive, send)
            return
        response = JSONResponse(error_body(scope.get("path", ""), 403, message,
                                           code="forbidden_origin"), status_code=403)
        await response(scope, receive, send)


class BearerAuth:
    """``Authorization: Bearer KEY`` on every request (constant-time compare), else 401."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") == "OPTIONS":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        value = headers.get(b"authorization", b"").strip()
        token = value[7:].strip() if value[:7].lower() == b"bearer " else b""
        if not hmac.compare_digest(token, self.key):
            msg = ("missing API key: send 'Authorization: Bearer KEY'" if not token
                   else "wrong API key")
            response = JSONResponse(error_body(scope.get("path", ""), 401, msg,
                                               code="invalid_api_key"),
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _root(request: Request) -> Response:
    # Ollama clients probe "/" for "Ollama is running".
    return Response("slmchat is running (Ollama and OpenAI compatible)", media_type="text/plain")


def build_app(engine: EngineLike, config: ServerConfig | None = None,
              log_store: ConversationLog | None = None, discover: Discover | None = None) -> Starlette:
    config = config or ServerConfig()
    middleware = [Middleware(HostGuard, bound_host=config.host, origins=config.cors_origins)]
    if config.cors_origins:
        middleware.append(Middleware(CORSMiddleware, allow_origins=list(config.cors_origins),
                                     allow_methods=["GET", "POST", "OPTIONS"],
                                     allow_headers=["Authorization", "Content-Type"]))
    if config.api_key:
        middleware.append(Middleware(BearerAuth, api_key=config.api_key))
    routes = [Route("/", _root, methods=["GET", "HEAD"]), *openai_api.routes(), *ollama_api.routes()]
    app = Starlette(
        routes=routes, middleware=middleware,
        exception_handlers={APIError: _api_error, HTTPException: _http_error,
                            Exception: _server_error},
    )
    app.state.slm = ServerState(engine, config, log_store, discover)
    return app
