"""textual-serve, made safe for slmchat: an offline page and a same-origin websocket.

textual-serve 1.1.3 serves the app to a browser: each websocket connection runs
``slmchat chat`` in a subprocess and relays its screen. Two changes keep it private:

- its page template links a Google Fonts stylesheet, so opening the page would call out
  to the internet; we serve a copy whose font comes from textual-serve's own bundled
  Roboto Mono file (and refuse to start if the template no longer matches);
- it has no login, and browsers let any web page open a websocket to localhost; the
  websocket here only accepts connections whose Origin is this server's own page, so
  another site open in the browser cannot drive the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from slmchat.errors import SlmChatError

FONT_LINK = re.compile(
    r'<link\s+rel="stylesheet"\s+href="https://fonts\.googleapis\.com/[^"]*"\s*/>', re.S)
LOCAL_FONT = """<style>
      @font-face {
        font-family: "Roboto Mono";
        src: url("{{ config.static.url }}fonts/RobotoMono-VariableFont_wght.ttf");
      }
    </style>"""


SHUTDOWN_S = 3.0


class WebError(SlmChatError):
    pass


def offline_template(original: str) -> str:
    """The page template with every remote resource replaced by a bundled one."""
    page, n = FONT_LINK.subn(LOCAL_FONT, original)
    remote = re.findall(r'(?:href|src)="(https?://[^"]+)"', page)
    if n != 1 or remote:
        raise WebError("textual-serve's page template changed (remote resources: "
                       f"{remote or 'font link not found'}); refusing to serve a page that "
                       "could reach the internet")
    return page


def chat_command(model_args: list[str]) -> str:
    """The shell command each browser tab runs: the chat app on this interpreter."""
    return shlex.join([sys.executable, "-m", "slmchat", "chat", *model_args])


def make_server(command: str, host: str, port: int, template_dir: Path) -> Any:
    import textual_serve
    from aiohttp import web
    from textual_serve.server import Server

    original = Path(textual_serve.__file__).parent / "templates" / "app_index.html"
    (template_dir / "app_index.html").write_text(
        offline_template(original.read_text(encoding="utf-8")), encoding="utf-8")

    allowed = {f"http://{name}:{port}" for name in (host, "127.0.0.1", "localhost", "[::1]")}

    class OfflineServer(Server):  # type: ignore[misc]
        async def on_startup(self, app: web.Application) -> None:
            pass  # no banner: the command prints one line with the address

        async def on_shutdown(self, app: web.Application) -> None:
            # End the tabs' app processes while the loop still runs, so their pipes close
            # cleanly (after the loop closes, asyncio complains about every one).
            await asyncio.to_thread(_end_children)

        async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
            origin = request.headers.get("Origin", "").rstrip("/")
            if origin not in allowed:
                raise web.HTTPForbidden(text="cross-origin websocket refused\n")
            response: web.WebSocketResponse = await super().handle_websocket(request)
            return response

    return OfflineServer(command, host=host, port=port, title="slmchat",
                         templates_path=str(template_dir))


def run(command: str, host: str, sock: socket.socket, on_started: Any = None) -> None:
    """Serve on the bound ``sock`` until Ctrl+C / SIGTERM."""
    from aiohttp import web

    port = sock.getsockname()[1]
    template_dir = Path(tempfile.mkdtemp(prefix="slmchat-web-"))
    try:
        server = make_server(command, host, port, template_dir)
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.request_exit)

        async def app() -> Any:
            application = await server._make_app()
            if on_started is not None:
                application.on_startup.append(lambda _app: _started(on_started))
            return application

        # shutdown_timeout: open tabs (websockets) get this long to close on Ctrl+C.
        web.run_app(app(), sock=sock, handle_signals=False, loop=loop, print=lambda *a: None,
                    shutdown_timeout=SHUTDOWN_S)
    finally:
        _end_children()
        shutil.rmtree(template_dir, ignore_errors=True)


def _end_children(grace_s: float = SHUTDOWN_S) -> None:
    """Tabs still open at shutdown leave app processes behind: end them (ours only).

    Exited children are left for asyncio to reap (reaping them here makes its child
    watcher complain); only ones that ignore SIGTERM for ``grace_s`` are killed."""
    import psutil

    def running(procs: list[psutil.Process]) -> list[psutil.Process]:
        alive = []
        for p in procs:
            with contextlib.suppress(psutil.Error):
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
        return alive

    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    deadline = time.monotonic() + grace_s
    while running(children) and time.monotonic() < deadline:
        time.sleep(0.05)
    for child in running(children):
        with contextlib.suppress(psutil.Error):
            child.kill()


async def _started(callback: Any) -> None:
    callback()
