"""The Starlette app: routes of both protocols, auth, CORS, JSON error bodies.

``build_app(engine, config)`` is all a caller needs; the app keeps its ``ServerState``
in ``app.state.slm``. Every error, including unknown routes and unexpected failures,
is a JSON body in the shape of the protocol the path belongs to, never a traceback.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

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
from slmchat.server.errors import APIError, error_body
from slmchat.server.flow import ServerConfig, ServerState

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
    message = {404: f"no such endpoint: {request.method} {request.url.path}",
               405: f"method {request.method} is not allowed on {request.url.path}"}.get(
        exc.status_code, str(exc.detail))
    return _json_error(request, exc.status_code, message, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return _json_error(request, 500, f"internal error: {type(exc).__name__}: {first}".rstrip(": "))


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
    middleware: list[Middleware] = []
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
