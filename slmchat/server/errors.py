"""Errors the server answers with, shaped for the protocol the client speaks.

OpenAI clients expect ``{"error": {"message", "type", "param", "code"}}``; Ollama
clients expect ``{"error": "message"}``. Every failure a request can cause is an
``APIError`` with an HTTP status; nothing reaches a client as a traceback.
"""

from __future__ import annotations

from typing import Any

OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_exceeded",
    500: "server_error",
    502: "server_error",
    503: "server_error",
}


class APIError(Exception):
    """A request failed with ``status``; ``str(exc)`` is the one-line message."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}


def clip(text: str, limit: int = 200) -> str:
    """``text`` for an error message, cut to ``limit`` characters: a client's 4 MB model
    name or 100 KB path is not echoed back whole."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def shown(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut as ``clip`` does."""
    return clip(repr(value), limit)


def is_ollama_path(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


def error_body(path: str, status: int, message: str, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """The JSON error body for a request to ``path``."""
    if is_ollama_path(path):
        return {"error": message}
    return {"error": {"message": message, "type": OPENAI_TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": code}}
