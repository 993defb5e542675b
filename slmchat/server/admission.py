"""Admission: from a request's body to a running generation.

``read_json`` reads the body within the limits (size, time, valid text); ``admit``
resolves the model name, waits for the gate in FIFO order (while watching for the
client going away, which cancels the generation at its next token), starts the
request's ``Worker`` and returns the ``Admitted`` request whose chunks the protocol
modules format. ``ensure_model`` is Ollama's load-only request, in turn with generations.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive

from slmchat.engine import runtimes
from slmchat.engine.generation.decode import CancelToken, GenerationChunk
from slmchat.server.errors import APIError
from slmchat.server.gate import ClientGone
from slmchat.server.requests import GenRequest, Planned, lone_surrogate_at
from slmchat.server.state import ServerState, state_of
from slmchat.server.worker import Done, Failed, Worker, as_api_error, chunk_error

log = logging.getLogger("slmchat.server")

_DRAIN_LIMIT = 64 * 1024 * 1024  # read (and drop) this much of an oversized body, then stop


async def read_json(request: Request) -> Any:
    """The request body as JSON: 413 past the limit, 400 when empty, not JSON, nested
    too deeply or holding a lone surrogate, 408 when the body stops arriving."""
    config = state_of(request).config
    limit = config.max_body_bytes
    body = bytearray()
    size = 0
    too_big = False
    chunks = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), config.body_timeout_s)
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise APIError(408, f"the request body stopped arriving (nothing for "
                           f"{config.body_timeout_s:g} s); send the whole body",
                           headers={"Connection": "close"}) from None
        except ClientDisconnect:  # nobody reads the answer; it only must not be a traceback
            raise APIError(499, "the client closed the connection during the request body",
                           headers={"Connection": "close"}) from None
        size += len(chunk)
        if size > limit:
            too_big = True  # keep reading (and dropping) so the client sees the 413
            if size > _DRAIN_LIMIT:
                break
            continue
        body += chunk
    if too_big:
        raise APIError(413, f"the request body is over {limit // (1024 * 1024)} MB "
                       f"({limit} bytes)", code="request_too_large")
    if not body.strip():
        raise APIError(400, "the request body is empty; send a JSON object")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIError(400, f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise APIError(400, "the request body is not valid JSON: it is nested too "
                       "deeply") from None
    where = lone_surrogate_at(data)
    if where is not None:
        raise APIError(400, f"{where or 'the request body'} holds a lone UTF-16 surrogate "
                       "(an unpaired \\ud800-\\udfff escape), which is not Unicode text",
                       param=where or None)
    return data


class DisconnectWatch:
    """Listens for the client going away; then sets ``gone`` and cancels the generation."""

    def __init__(self, receive: Receive, cancel: CancelToken) -> None:
        self.gone = asyncio.Event()
        self.cancel = cancel
        self._task = asyncio.ensure_future(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.gone.set()
                self.cancel.cancel()
                return

    def stop(self) -> None:
        self._task.cancel()


class Admitted:
    """One admitted request: its worker, its plan, and the disconnect watch."""

    def __init__(self, worker: Worker, watch: DisconnectWatch, t0: float) -> None:
        self.worker = worker
        self.watch = watch
        self.created = int(time.time())
        self.t0 = t0  # perf_counter when the request arrived (Ollama's total_duration)
        self.reasoning = ""  # collect(): the reply's reasoning block, apart from its text

    @property
    def planned(self) -> Planned:
        assert self.worker.planned is not None
        return self.worker.planned

    @property
    def model(self) -> str:
        info = self.worker.engine.info
        return info.name if info is not None else "none"

    def close(self) -> None:
        """Stop listening and stop the model (a no-op when the reply already ended)."""
        self.watch.stop()
        self.worker.cancel.cancel()

    async def chunks(self) -> AsyncIterator[GenerationChunk]:
        """Every chunk to the last; a failure raises APIError (text already yielded stays)."""
        while True:
            item = await self.worker.next()
            if isinstance(item, Done):
                return
            if isinstance(item, Failed):
                raise as_api_error(item.error)
            if isinstance(item, GenerationChunk):
                if item.finish_reason == "error":
                    info = self.worker.engine.info
                    raise chunk_error(item, upstream=info is not None
                                      and runtimes.conversation(info) is not None)
                yield item

    async def collect(self) -> tuple[str, GenerationChunk]:
        """The whole reply (non-streaming requests)."""
        parts: list[str] = []
        thoughts: list[str] = []
        last: GenerationChunk | None = None
        try:
            async for chunk in self.chunks():
                parts.append(chunk.text)
                thoughts.append(chunk.reasoning)
                last = chunk
        finally:
            self.close()
        if self.watch.gone.is_set():
            raise APIError(499, "the client closed the request")
        if last is None:
            raise APIError(500, "generation produced nothing")
        self.reasoning = "".join(thoughts)
        return "".join(parts), last


def finish_reason(last: GenerationChunk | None) -> str:
    """OpenAI/Ollama finish reasons: a reply stopped by shutdown or cancel ends as 'stop'."""
    return "length" if last is not None and last.finish_reason == "length" else "stop"


async def admit(request: Request, req: GenRequest, api: str) -> Admitted:
    """Wait for the model in FIFO order and start the request's worker; 4xx/5xx on failure."""
    t0 = time.perf_counter()
    state = state_of(request)
    cancel = CancelToken()
    watch = DisconnectWatch(request.receive, cancel)
    try:
        await asyncio.to_thread(state.catalog.resolve, req.model)  # 404 before queueing
        await state.gate.acquire(watch.gone)
        try:
            worker = Worker(state.engine, state.gate, state.catalog, req, state.config.defaults,
                            cancel, recorder=_recorder(state, request, api) if state.log else None)
            state.workers.add(worker)
            worker.on_done = lambda: state.workers.discard(worker)
            worker.start()
        except BaseException:
            state.gate.release()
            raise
        await worker.first()
    except ClientGone:
        watch.stop()
        cancel.cancel()
        raise APIError(499, "the client closed the request") from None
    except BaseException:
        watch.stop()
        cancel.cancel()
        raise
    return Admitted(worker, watch, t0)


async def ensure_model(request: Request, name: str | None) -> str:
    """Load ``name`` if it is another local model (a swap, through ``Catalog.switch``
    as a generation's is), in turn with generations."""
    state = state_of(request)
    choice = await asyncio.to_thread(state.catalog.resolve, name)  # 404 before queueing
    if choice.load is None:
        return choice.name
    await state.gate.acquire(asyncio.Event())
    try:
        return await asyncio.to_thread(state.catalog.switch, name)
    finally:
        state.gate.release()


def _recorder(state: ServerState, request: Request, api: str) -> Any:
    client = request.client.host if request.client else None
    endpoint = request.url.path
    started = time.time()

    def record(worker: Worker, text: str) -> None:
        assert state.log is not None
        try:
            state.log.record(api=api, endpoint=endpoint, client=client,
                             messages=worker.req.messages, reply=text,
                             last=worker.last_seen, params=worker.planned_params,
                             info=state.engine.info, started=started)
        except Exception as exc:  # logging must never fail a request
            log.warning("could not log the conversation: %s", exc)

    return record
