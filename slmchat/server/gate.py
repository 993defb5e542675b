"""The queue gate: one generation (or model swap) at a time; others wait in FIFO order.

``Gate`` admits the first request at once, lets up to ``max_queue`` wait in arrival order,
and answers the rest 429 with a Retry-After estimated from recent generations. The gate
is owned by the generation's worker thread (``worker.py``), not by the request's
coroutine: it is released when the engine has really stopped, so a cancelled request
never lets a second generation start while the first is still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from typing import Any

from slmchat.server.errors import APIError


class ClientGone(Exception):
    """The client disconnected while its request waited for the model."""


class Gate:
    """A FIFO gate for the one model. Use only from the event loop thread."""

    def __init__(self, max_queue: int) -> None:
        self.max_queue = max_queue
        self._busy = False
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closing = False
        self._recent_s = 5.0  # running mean of generation time, for Retry-After

    @property
    def busy(self) -> bool:
        return self._busy

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    def retry_after(self) -> int:
        return max(1, math.ceil(self._recent_s * (self.waiting + 1)))

    def record(self, seconds: float) -> None:
        self._recent_s = 0.7 * self._recent_s + 0.3 * seconds

    async def acquire(self, gone: asyncio.Event) -> None:
        """Wait for the model in arrival order; ``gone`` set by a disconnect gives up."""
        if self._closing:
            raise APIError(503, "the server is shutting down", headers={"Retry-After": "5"})
        if not self._busy and not self._waiters:
            self._busy = True
            return
        if self.waiting >= self.max_queue:
            raise APIError(
                429, f"the model is busy and {self.waiting} requests are already waiting; "
                "retry later", code="queue_full", headers={"Retry-After": str(self.retry_after())})
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        watcher: asyncio.Future[Any] = asyncio.ensure_future(gone.wait())
        waits: set[asyncio.Future[Any]] = {turn, watcher}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            self._give_up(turn)
            raise
        finally:
            watcher.cancel()
        if gone.is_set() or not turn.done():
            self._give_up(turn)
            raise ClientGone
        if turn.exception() is not None:
            raise turn.exception()  # type: ignore[misc]

    def _give_up(self, turn: asyncio.Future[None]) -> None:
        if turn.done() and not turn.cancelled() and turn.exception() is None:
            self.release()  # the turn was granted just as the client left: pass it on
        else:
            turn.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(turn)

    def release(self) -> None:
        """Hand the model to the oldest waiter still waiting, or mark it free."""
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)  # ownership passes on; _busy stays True
                return
        self._busy = False

    def close(self) -> None:
        """Refuse new requests and tell every waiter the server is going away."""
        self._closing = True
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_exception(APIError(503, "the server is shutting down",
                                            headers={"Retry-After": "5"}))
