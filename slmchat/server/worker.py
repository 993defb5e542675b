"""One request's generation in a worker thread, read from the event loop.

``Worker`` holds the gate (``gate.py``) from the moment it starts: in its thread it
switches to the requested model if another one is loaded (``Catalog.switch``, the one
swap path), plans the request (``requests.plan``), runs ``EngineLike.stream_chat`` and
posts every item to an asyncio queue: the ``Planned`` prompt first, then each
``GenerationChunk``, a ``Failed`` for anything raised, and ``Done`` after the gate was
released. A client that goes away sets the ``CancelToken``; the engine checks it before
each token, so the model is free again within one token.

``as_api_error`` and ``chunk_error`` map what the worker saw to the client's answer.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slmchat.engine.generation.decode import CancelToken, GenerationChunk
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.session import EngineLike
from slmchat.errors import SlmChatError
from slmchat.server.catalog import Catalog
from slmchat.server.errors import APIError
from slmchat.server.gate import ClientGone, Gate
from slmchat.server.requests import GenRequest, Planned, plan

log = logging.getLogger("slmchat.server")


@dataclass(frozen=True)
class Failed:
    """The worker raised: reported to the request, never lost in the thread."""

    error: BaseException


@dataclass(frozen=True)
class Done:
    """The engine has stopped and the gate is free."""


Item = Planned | GenerationChunk | Failed | Done


class Worker:
    """One request's run of the engine in a worker thread, read from the event loop."""

    def __init__(self, engine: EngineLike, gate: Gate, catalog: Catalog, req: GenRequest,
                 defaults: SamplingParams, cancel: CancelToken,
                 recorder: Callable[[Worker, str], None] | None = None) -> None:
        self.engine = engine
        self.gate = gate
        self.catalog = catalog
        self.req = req
        self.defaults = defaults
        self.cancel = cancel
        self.recorder = recorder
        self.on_done: Callable[[], None] | None = None
        self.queue: asyncio.Queue[Item] = asyncio.Queue()
        self.started = time.perf_counter()
        self.first_token_at: float | None = None
        self.planned: Planned | None = None  # read on the loop thread
        self.last: GenerationChunk | None = None
        self.planned_params: SamplingParams | None = None  # written by the worker thread
        self.last_seen: GenerationChunk | None = None
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="slmchat-generate", daemon=True)

    def start(self) -> None:
        """Start the worker; from now on the thread owns (and releases) the gate."""
        self._thread.start()

    def _post(self, item: Item | Callable[[], None]) -> None:
        try:
            if callable(item):
                self._loop.call_soon_threadsafe(item)
            else:
                self._loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop closed (server stopped): nobody is listening
            pass

    def _run(self) -> None:
        text: list[str] = []
        try:
            self.catalog.switch(self.req.model)  # the model may have changed while we waited
            planned = plan(self.engine, self.req, self.defaults)
            self.planned_params = planned.params
            self._post(planned)
            if self.cancel.cancelled:
                return
            for chunk in self.engine.stream_chat(self.req.messages, planned.params, self.cancel,
                                                 mode=self.req.mode, constraint=self.req.constraint,
                                                 reuse_cache=self.req.cache_prompt,
                                                 thinking=self.req.thinking,
                                                 prediction=self.req.prediction):
                if chunk.warning:  # e.g. a damaged ONNX copy: the operator's log hears it
                    log.warning("%s", chunk.warning)
                text.append(chunk.text)
                self.last_seen = chunk
                self._post(chunk)
        except BaseException as exc:  # reported to the request, never lost in the thread
            self._post(Failed(exc))
        finally:
            if self.recorder is not None and self.planned_params is not None:
                self.recorder(self, "".join(text))
            elapsed = time.perf_counter() - self.started
            # One callback: the gate is free before the request sees Done, so a client
            # that got its whole reply never finds the model still busy (two callbacks
            # could straddle a loop iteration, and the reply went out first).
            self._post(lambda: self._finish(elapsed))

    def _finish(self, elapsed: float) -> None:
        self.gate.record(elapsed)
        self.gate.release()
        if self.on_done is not None:
            self.on_done()
        self.queue.put_nowait(Done())

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    async def next(self) -> Item:
        item = await self.queue.get()
        if isinstance(item, Planned):
            self.planned = item
        elif isinstance(item, GenerationChunk):
            if self.first_token_at is None and (item.text or item.new_tokens):
                self.first_token_at = time.perf_counter()
            self.last = item
        return item

    async def first(self) -> Planned:
        """Wait for the plan; a bad request (too long, bad template) raises a 4xx here."""
        item = await self.next()
        if isinstance(item, Failed):
            raise as_api_error(item.error)
        if not isinstance(item, Planned):  # cancelled before planning finished
            raise ClientGone
        return item


def as_api_error(exc: BaseException) -> APIError:
    """The client-facing error for something the worker raised."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, SlmChatError):
        return APIError(400, str(exc))
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return APIError(500, f"generation failed: {name}: {text}" if text else f"generation failed: {name}")


def chunk_error(chunk: Any, upstream: bool = False) -> APIError:
    """A reply that failed midway: 502 when a remote server behind ``serve --with-remote``
    failed (the gateway's answer, with the profile's one line), else 500."""
    return APIError(502 if upstream else 500,
                    f"generation failed: {chunk.error or 'unknown error'}")
