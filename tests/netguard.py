"""Refuse every outbound non-loopback connection during the test suite.

conftest installs it in the pytest process; tests/netguard_site/sitecustomize.py
installs it in every Python subprocess the tests start (PYTHONPATH + SLMCHAT_NETGUARD=1).
Attempts are recorded (and appended to $SLMCHAT_NETGUARD_LOG when set) and make the
session fail, even when the code under test swallowed the error.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

ATTEMPTS: list[str] = []
_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex
_original_getaddrinfo = socket.getaddrinfo


class NetworkBlocked(OSError):
    pass


def _is_local(address: Any) -> bool:
    if isinstance(address, str | bytes):  # AF_UNIX path
        return True
    host = address[0] if isinstance(address, tuple) else address
    if host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _record(what: str) -> None:
    import os

    ATTEMPTS.append(what)
    log = os.environ.get("SLMCHAT_NETGUARD_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(what + "\n")


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if self.family == socket.AF_UNIX or _is_local(address):
        return _original_connect(self, address)
    _record(repr(address))
    raise NetworkBlocked(f"network access blocked in tests: {address!r}")


def _guarded_connect_ex(self: socket.socket, address: Any) -> Any:
    if self.family == socket.AF_UNIX or _is_local(address):
        return _original_connect_ex(self, address)
    _record(repr(address))
    raise NetworkBlocked(f"network access blocked in tests: {address!r}")


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if not _is_local((host,)) and host not in ("localhost",):
        _record(f"dns:{host}")
        raise NetworkBlocked(f"DNS lookup blocked in tests: {host!r}")
    return _original_getaddrinfo(host, *args, **kwargs)


def install() -> None:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = _guarded_getaddrinfo  # type: ignore[assignment]
