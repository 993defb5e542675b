"""One generation at a time, in a thread, fed to the event loop; others wait in FIFO order.

``Slot`` is the gate: the first request runs, up to ``max_queue`` wait (in arrival
order), the rest get 429 with a Retry-After estimated from recent generations. The
slot is owned by the generation thread, not by the request's coroutine: it is released
when the engine has really stopped, so a cancelled request never lets a second
generation start while the first is still running.

``Generation`` runs ``EngineLike.stream_chat`` in a thread and posts every chunk to an
asyncio queue. A client that goes away sets the ``CancelToken``; the engine checks it
before each token, so the model is free again within one token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from slmchat.engine.generation.decode import CancelToken, GenerationChunk
from slmchat.engine.generation.prompting import Prompt
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.session import EngineLike
from slmchat.errors import SlmChatError
from slmchat.server.catalog import Catalog
from slmchat.server.errors import APIError
from slmchat.server.requests import GenRequest

log = logging.getLogger("slmchat.server")


class ClientGone(Exception):
    """The client disconnected while its request waited for the model."""


class Slot:
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


@dataclass(frozen=True)
class Planned:
    """The prompt the model will see and the sampling it will use."""

    prompt: Prompt
    params: SamplingParams


@dataclass(frozen=True)
class Failed:
    error: BaseException


@dataclass(frozen=True)
class Done:
    pass


Item = Planned | GenerationChunk | Failed | Done


def plan(engine: EngineLike, req: GenRequest, defaults: SamplingParams) -> Planned:
    """Choose max_new_tokens and build the prompt (trimmed by the app's budget rules).

    Without an explicit ``max_tokens`` the reply gets the default length, cut to what the
    context leaves after the prompt (at least a quarter of the context, older turns
    dropped to make room). An explicit value must be below the context length; a raw
    prompt that does not fit beside it is refused rather than cut.
    """
    info = engine.info
    if info is None:
        raise APIError(503, "no model is loaded", headers={"Retry-After": "5"})
    ctx = info.context_length
    params = req.sampling(defaults)
    if req.max_tokens is not None and req.max_tokens >= ctx:
        raise APIError(400, f"max_tokens ({req.max_tokens}) must be below the model's context "
                       f"length ({ctx})", param="max_tokens")
    probe = engine.preview_prompt(req.messages, replace(params, max_new_tokens=1), req.mode,
                                  thinking=req.thinking)
    if req.max_tokens is None:
        room = ctx - probe.prompt_tokens
        params = replace(params, max_new_tokens=max(1, min(params.max_new_tokens,
                                                           max(room, ctx // 4))))
    fits = probe.prompt_tokens + params.max_new_tokens <= ctx and not probe.truncated
    prompt = probe if fits and not probe.dropped_messages else engine.preview_prompt(
        req.messages, params, req.mode, thinking=req.thinking)
    if not req.cache_prompt:  # the engine drops its KV cache first: nothing is reused
        prompt = replace(prompt, cached_tokens=0)
    if req.strict_context and prompt.truncated:
        raise APIError(400, f"the prompt is {probe.prompt_tokens} tokens; with max_tokens "
                       f"{params.max_new_tokens} that is more than the model's context length "
                       f"({ctx})", param="prompt", code="context_length_exceeded")
    return Planned(prompt, params)


class Generation:
    """One request's run of the engine in a worker thread, read from the event loop."""

    def __init__(self, engine: EngineLike, slot: Slot, req: GenRequest,
                 defaults: SamplingParams, cancel: CancelToken, catalog: Catalog | None = None,
                 recorder: Callable[[Generation, str], None] | None = None) -> None:
        self.engine = engine
        self.slot = slot
        self.req = req
        self.defaults = defaults
        self.cancel = cancel
        self.catalog = catalog
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
        """Start the worker; from now on the thread owns (and releases) the slot."""
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
            if self.catalog is not None:  # the model may have changed while we waited
                choice = self.catalog.resolve(self.req.model)
                if choice.load is not None:
                    self.engine.load(choice.load)
            planned = plan(self.engine, self.req, self.defaults)
            self.planned_params = planned.params
            self._post(planned)
            if self.cancel.cancelled:
                return
            for chunk in self.engine.stream_chat(self.req.messages, planned.params, self.cancel,
                                                 mode=self.req.mode, constraint=self.req.constraint,
                                                 reuse_cache=self.req.cache_prompt,
                                                 thinking=self.req.thinking):
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
            # One callback: the slot is free before the request sees Done, so a client
            # that got its whole reply never finds the model still busy (two callbacks
            # could straddle a loop iteration, and the reply went out first).
            self._post(lambda: self._finish(elapsed))

    def _finish(self, elapsed: float) -> None:
        self.slot.record(elapsed)
        self.slot.release()
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
