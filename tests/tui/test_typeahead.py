"""Keys typed while the app starts are kept and sent (slmchat chat in a real terminal).

The app runs in a pseudo-terminal on a FakeEngine, with a start-up made slow on purpose
(a sleep where the settings load, as when imports are slow), and the keys are written
before Python has even started: they must not be lost, and Enter typed in the terminal's
line mode must still send.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from slmchat.tui.early_input import parse_typed

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import time, slmchat.config, slmchat.engine.session
from tests.tui.fakes import FakeEngine
real = slmchat.config.load_settings
def slow(*a, **k):
    time.sleep(1.5)  # a slow start-up: keys arrive meanwhile
    return real(*a, **k)
slmchat.config.load_settings = slow
slmchat.engine.session.Engine = lambda **_: FakeEngine(replies=["Blue."])
from slmchat.cli import main
raise SystemExit(main(["chat"]))
"""


def stored_rows(db: Path) -> list[tuple[str, str]]:
    if not db.exists():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            return list(con.execute("SELECT role, content FROM messages ORDER BY id"))
    except sqlite3.Error:  # not created yet
        return []


def test_parse_typed_replays_enter_backspace_and_drops_escapes() -> None:
    typed = parse_typed("Name a colx\x7four.\nsecond\r\x1b[Adraft")
    assert typed.lines == ["Name a colour.", "second"] and typed.draft == "draft"
    assert not parse_typed("\x1b[B\r")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX terminal")
def test_keys_typed_before_the_first_frame_are_sent(tmp_path: Path) -> None:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    before = termios.tcgetattr(slave)
    env = {**os.environ, "TERM": "xterm-256color", "PYTHONPATH": str(ROOT),
           "SLMCHAT_DATA_DIR": str(tmp_path / "data"),
           "SLMCHAT_CONFIG_DIR": str(tmp_path / "config")}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdin=slave, stdout=slave,
                            stderr=slave, env=env, cwd=ROOT, start_new_session=True)
    screen: list[bytes] = []

    def drain() -> None:  # the app blocks if nobody reads its output
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            screen.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        os.write(master, b"Name a ")  # before Python has started: the line mode echoes
        time.sleep(0.8)
        os.write(master, b"colour.\r")  # during the slow start-up
        db = tmp_path / "data" / "conversations.db"
        deadline = time.monotonic() + 90
        rows: list[tuple[str, str]] = []
        while time.monotonic() < deadline and proc.poll() is None:
            rows = stored_rows(db)  # read-only: the app may still be creating it
            if rows and rows[-1] == ("assistant", "Blue."):
                break
            time.sleep(0.3)
        assert rows == [("user", "Name a colour."), ("assistant", "Blue.")], \
            b"".join(screen)[-2000:]
        os.write(master, b"\x11")  # Ctrl+Q
        assert proc.wait(30) == 0
        after = termios.tcgetattr(slave)
        assert after[3] & termios.ECHO and after[3] & termios.ICANON  # terminal given back
        assert after[0] == before[0] and after[3] == before[3]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(slave)
        os.close(master)
