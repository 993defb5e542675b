"""HTTP to a remote profile's server (httpx): one JSON GET, one streamed POST, and every
failure as one line that names the profile.

The streamed POST retries with backoff only when the connection cannot be made (nothing
was sent, so nothing can be answered twice); any other failure ends it at once. A cancel
shuts the socket down from a watcher thread, so a reply waiting on a server that sends
nothing stops at once rather than at the read timeout. The key goes into the request's
Authorization header and nowhere else: no message here holds a header.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from slmchat.errors import SlmChatError, first_line

if TYPE_CHECKING:
    import httpx


class RemoteProfile(Protocol):
    """What a request needs of a profile (engine/model/remote.RemoteProfile)."""

    @property
    def name(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def api_base(self) -> str: ...
    @property
    def api_key_env(self) -> str | None: ...
    @property
    def timeout_s(self) -> float: ...

    def api_key(self) -> str | None: ...
    def key_problem(self) -> str | None: ...
    def headers(self) -> dict[str, str]: ...

CONNECT_TIMEOUT_S = 10.0
BACKOFF_S = (0.5, 1.0, 2.0)  # waits before the 2nd, 3rd and 4th connection attempts
_DETAIL_MAX = 160


class RemoteError(SlmChatError):
    """A remote server could not be reached or refused: one line naming the profile."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Cancelled(Exception):
    """The caller cancelled while connecting or waiting for the reply."""


def _timeout(prof: RemoteProfile, read_s: float) -> httpx.Timeout:
    import httpx

    return httpx.Timeout(connect=min(CONNECT_TIMEOUT_S, read_s), read=read_s, write=30.0,
                         pool=CONNECT_TIMEOUT_S)


def _client(prof: RemoteProfile, read_s: float) -> httpx.Client:
    import httpx

    # trust_env off: a proxy variable must not silently route a loopback profile elsewhere.
    return httpx.Client(timeout=_timeout(prof, read_s), headers=prof.headers(),
                        follow_redirects=False, trust_env=False)


def _detail(response: httpx.Response) -> str:
    """The server's own words on an error, short (OpenAI, Ollama, FastAPI shapes)."""
    try:
        body = response.read()[:8192].decode("utf-8", "replace")
    except Exception:
        return ""
    text = body
    with contextlib.suppress(ValueError):
        data = json.loads(body)
        if isinstance(data, dict):
            err = data.get("error", data.get("detail", data.get("message")))
            if isinstance(err, dict):
                err = err.get("message") or err.get("msg")
            text = str(err) if err is not None else body
    line = " ".join(text.split())
    return line[:_DETAIL_MAX] + ("…" if len(line) > _DETAIL_MAX else "")


def status_error(prof: RemoteProfile, response: httpx.Response, what: str = "") -> RemoteError:
    """The one line for an HTTP error status."""
    code = response.status_code
    detail = _detail(response)
    said = f": {detail}" if detail else ""
    name, host = prof.name, prof.host
    if code in (401, 403):
        if not prof.api_key_env:
            hint = "the profile names no api_key_env"
        elif prof.api_key() is None:
            hint = f"the environment variable {prof.api_key_env} is not set"
        else:
            hint = f"check the key in {prof.api_key_env}"
        msg = f"{name}: {host} refused the key ({code}{said}); {hint}"
    elif code == 404:
        msg = f"{name}: {host} has no {what or response.request.url.path} (404{said})"
    elif code == 429:
        after = response.headers.get("retry-after")
        wait = f", retry after {after} s" if after else ""
        msg = f"{name}: {host} is rate limiting requests (429{wait}){said}"
    elif code >= 500:
        msg = f"{name}: {host} failed with {code}{said}"
    else:
        msg = f"{name}: {host} refused the request ({code}{said})"
    return RemoteError(msg, code)


def transport_error(prof: RemoteProfile, exc: Exception, read_s: float) -> RemoteError:
    """The one line for a connection that failed, timed out or broke."""
    import httpx

    name, host = prof.name, prof.host
    reason = first_line(exc, default=type(exc).__name__)
    if isinstance(exc, httpx.ConnectTimeout):
        return RemoteError(f"{name}: cannot connect to {host} (no answer within "
                           f"{CONNECT_TIMEOUT_S:g} s)")
    if isinstance(exc, httpx.ConnectError):
        return RemoteError(f"{name}: cannot connect to {host} ({reason})")
    if isinstance(exc, httpx.ReadTimeout):
        return RemoteError(f"{name}: {host} sent nothing for {read_s:g} s (timeout)")
    if isinstance(exc, httpx.TimeoutException):
        return RemoteError(f"{name}: {host} timed out ({type(exc).__name__})")
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return RemoteError(f"{name}: the connection to {host} dropped ({reason})")
    return RemoteError(f"{name}: {host}: {type(exc).__name__}: {reason}")


def get_json(prof: RemoteProfile, path: str, timeout_s: float) -> Any:
    """GET ``api_base + path`` as JSON; RemoteError in one line otherwise."""
    import httpx

    problem = prof.key_problem()
    if problem:
        raise RemoteError(problem)
    url = prof.api_base + path
    try:
        with _client(prof, timeout_s) as client:
            response = client.get(url)
            if response.status_code >= 400:
                raise status_error(prof, response)
            if 300 <= response.status_code < 400:
                raise RemoteError(f"{prof.name}: {url} redirects to "
                                  f"{response.headers.get('location', '?')}; put that in base_url")
            try:
                return response.json()
            except ValueError:
                raise RemoteError(f"{prof.name}: {url} did not answer JSON (is base_url "
                                  "the API root?)") from None
    except httpx.HTTPError as exc:
        raise transport_error(prof, exc, timeout_s) from None


class StreamedPost:
    """One streamed POST: ``lines()`` yields the body's lines; ``cancelled`` polled by
    a watcher thread shuts the socket down (a blocked read returns at once)."""

    def __init__(self, prof: RemoteProfile, path: str, payload: dict[str, Any],
                 cancelled: Callable[[], bool]) -> None:
        self.prof = prof
        self.url = prof.api_base + path
        self.payload = payload
        self.cancelled = cancelled
        self.read_s = prof.timeout_s
        self.attempts = 0
        self._socks: list[socket.socket] = []
        self._done = threading.Event()

    def _trace(self, event: str, info: dict[str, Any]) -> None:
        # httpcore's trace hook hands us the connected stream: its socket is what a
        # cancel shuts down (closing the client would not wake a blocked recv).
        if event == "connection.connect_tcp.complete":
            stream = info.get("return_value")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if isinstance(sock, socket.socket):
                self._socks.append(sock)
                if self.cancelled():
                    self._shutdown()

    def _shutdown(self) -> None:
        for sock in self._socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _watch(self) -> None:
        while not self._done.wait(0.05):
            if self.cancelled():
                self._shutdown()
                return

    def lines(self) -> Iterator[str]:
        """The response body line by line. RemoteError for a refused request or a broken
        connection, Cancelled when cancelled (whatever was already yielded stays)."""
        import httpx

        problem = self.prof.key_problem()
        if problem:
            raise RemoteError(problem)
        watcher = threading.Thread(target=self._watch, name="slmchat-remote-cancel", daemon=True)
        watcher.start()
        try:
            with _client(self.prof, self.read_s) as client:
                response = self._send(client)
                try:
                    if response.status_code >= 400:
                        raise status_error(self.prof, response,
                                           f"model {self.payload.get('model')!r}")
                    if response.status_code >= 300:
                        raise RemoteError(f"{self.prof.name}: {self.url} redirects to "
                                          f"{response.headers.get('location', '?')}; put "
                                          "that in base_url")
                    yield from response.iter_lines()
                except httpx.HTTPError as exc:
                    if self.cancelled():
                        raise Cancelled from None
                    raise transport_error(self.prof, exc, self.read_s) from None
                finally:
                    response.close()
        finally:
            self._done.set()

    def _pause(self, seconds: float) -> None:
        """Wait before the next attempt; a cancel ends the wait at once."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.cancelled():
                raise Cancelled
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))

    def _send(self, client: httpx.Client) -> httpx.Response:
        """The response's head; connection failures are retried with backoff."""
        import httpx

        request = client.build_request("POST", self.url, json=self.payload,
                                       extensions={"trace": self._trace})
        for wait in (*BACKOFF_S, None):
            if self.cancelled():
                raise Cancelled
            self.attempts += 1
            try:
                return client.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if self.cancelled():
                    raise Cancelled from None
                if wait is None:
                    raise transport_error(self.prof, exc, self.read_s) from None
                self._pause(wait)
            except httpx.HTTPError as exc:
                if self.cancelled():
                    raise Cancelled from None
                raise transport_error(self.prof, exc, self.read_s) from None
        raise AssertionError("unreachable")
