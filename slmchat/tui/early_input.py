"""Keys typed before the first frame: kept, not echoed, and handed to the app.

A terminal starts in line mode: what is typed while Python starts is echoed onto the
screen and Enter arrives as a newline (Ctrl+J), which the prompt takes as "new line", not
"send". ``TypeAhead.start()`` runs first thing in ``slmchat chat``: it turns echo and line
editing off (Ctrl+C still interrupts) so keys wait unseen in the terminal's buffer, and
``take()``, called just before the app starts, reads what is there. Anything typed later
is read by Textual itself. ``restore()`` puts the terminal back as it was.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

# Escape sequences (arrows, function keys) typed early are dropped, not typed as text.
_ESCAPES = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|O.|.)?", re.DOTALL)


@dataclass
class TypedAhead:
    """What was typed: ``lines`` ended with Enter (to send), then an unfinished ``draft``."""

    lines: list[str] = field(default_factory=list)
    draft: str = ""

    def __bool__(self) -> bool:
        return bool(self.lines or self.draft)


def parse_typed(raw: str) -> TypedAhead:
    """Replay raw terminal input the way the prompt would: Enter (CR, or LF from line
    mode) ends a line, Backspace deletes, other control keys are ignored."""
    typed = TypedAhead()
    current: list[str] = []
    for ch in _ESCAPES.sub("", raw):
        if ch in "\r\n":
            line = "".join(current).strip()
            if line:
                typed.lines.append(line)
            current = []
        elif ch in "\x7f\x08":
            if current:
                current.pop()
        elif ch == "\t" or ch >= " ":
            current.append(ch)
    typed.draft = "".join(current)
    return typed


class TypeAhead:
    """Holds the terminal between launch and the first frame (see the module doc)."""

    def __init__(self, fd: int, original: list[Any]) -> None:
        self.fd = fd
        self.original = original

    @classmethod
    def start(cls, stream: TextIO | None = None) -> TypeAhead | None:
        """Quiet the terminal; None when stdin is not a terminal (nothing to keep)."""
        stream = stream or sys.stdin
        try:
            import termios

            fd = stream.fileno()
            if not os.isatty(fd):
                return None
            original = termios.tcgetattr(fd)
            quiet = termios.tcgetattr(fd)
            quiet[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN)  # lflag; ISIG stays
            quiet[0] &= ~(termios.ICRNL | termios.INLCR | termios.IGNCR)  # iflag: Enter is CR
            termios.tcsetattr(fd, termios.TCSANOW, quiet)
        except Exception:  # no termios, or termios.error: not a terminal we can drive
            return None
        return cls(fd, original)

    def take(self) -> TypedAhead:
        """Read (without waiting) everything typed so far."""
        chunks: list[bytes] = []
        with contextlib.suppress(OSError, ValueError):
            while select.select([self.fd], [], [], 0)[0]:
                data = os.read(self.fd, 4096)
                if not data:
                    break
                chunks.append(data)
        return parse_typed(b"".join(chunks).decode("utf-8", errors="ignore"))

    def restore(self) -> None:
        with contextlib.suppress(Exception):
            import termios

            termios.tcsetattr(self.fd, termios.TCSANOW, self.original)
