from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests import netguard


def test_outbound_connection_is_refused() -> None:
    before = len(netguard.ATTEMPTS)
    with pytest.raises(OSError, match="blocked"):
        socket.create_connection(("203.0.113.7", 443), timeout=1)
    assert len(netguard.ATTEMPTS) > before
    # This deliberate attempt is not one the app made: take it out of the record.
    del netguard.ATTEMPTS[before:]
    log = Path(os.environ["SLMCHAT_NETGUARD_LOG"])
    log.write_text("".join(line + "\n" for line in log.read_text().splitlines()
                           if "203.0.113.7" not in line))


def test_subprocesses_are_guarded_too() -> None:
    code = ("import socket\n"
            "try:\n    socket.create_connection(('198.51.100.9', 80), timeout=1)\n"
            "except OSError as e:\n    print('blocked' if 'blocked' in str(e) else 'other')\n")
    env = {**os.environ, "SLMCHAT_NETGUARD_LOG": ""}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.stdout.strip() == "blocked"


def test_loopback_still_works() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname(), timeout=2)
    client.close()
    server.close()
