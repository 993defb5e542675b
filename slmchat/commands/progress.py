"""A one-line progress bar on stderr for long one-time work before the app opens.

    converting the default model (once)  [########..........]  45%  reading the weights  12s

On a terminal the line is redrawn in place, and a clock ticks twice a second so a long,
quiet stage still shows life. Elsewhere (a pipe, a log file) it prints one plain line per
stage instead, so logs stay readable. Called as ``bar(what, fraction)``: the engine's
progress-callback shape, so an engine function takes it as is.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from types import TracebackType
from typing import TextIO

from slmchat.fmt import format_duration

TICK_S = 0.5


class TerminalBar:
    def __init__(self, title: str, stream: TextIO | None = None, width: int = 24,
                 tty: bool | None = None) -> None:
        self.title = title
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = self.stream.isatty() if tty is None else tty
        self.what = "starting"
        self.fraction = 0.0
        self.start = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._last_plain = ""
        self._closed = False

    def __enter__(self) -> TerminalBar:
        self.start = time.monotonic()
        if self.tty:
            self._ticker = threading.Thread(target=self._tick, name="progress-bar", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(ok=exc_type is None)

    def __call__(self, what: str, fraction: float) -> None:
        with self._lock:
            self.what = what
            self.fraction = min(1.0, max(self.fraction, fraction))  # never moves back
            if self.tty:
                self._draw()
            elif what != self._last_plain:
                self._last_plain = what
                self.stream.write(f"{self.title}: {round(self.fraction * 100):3d}%  {what}\n")
                self.stream.flush()

    def line(self, columns: int | None = None) -> str:
        """The bar, fitted to ``columns`` (a wrapped line could not be redrawn in place)."""
        filled = round(self.fraction * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        took = format_duration(time.monotonic() - self.start)
        head = f"{self.title}  [{bar}] {round(self.fraction * 100):3d}%  "
        if columns is None:
            return f"{head}{self.what}  {took}"
        if len(head) + len(took) + 12 > columns:
            head = f"[{bar}] {round(self.fraction * 100):3d}%  "
        room = max(0, columns - 1 - len(head) - len(took) - 2)
        what = self.what if len(self.what) <= room else self.what[: max(0, room - 1)] + "…"
        return f"{head}{what}  {took}"[: max(1, columns - 1)]

    def _draw(self) -> None:
        columns = shutil.get_terminal_size((80, 24)).columns
        self.stream.write("\r\x1b[2K" + self.line(columns))
        self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(TICK_S):
            with self._lock:
                self._draw()

    def close(self, ok: bool = True) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        took = format_duration(time.monotonic() - self.start)
        with self._lock:
            end = f"{self.title}: done in {took}" if ok else f"{self.title}: stopped after {took}"
            self.stream.write(("\r\x1b[2K" if self.tty else "") + end + "\n")
            self.stream.flush()
