"""What every generation route shares: state, body reading, admission, one run.

``ServerState`` holds the engine, the model names, the slot and the log. ``admit``
waits for the model in FIFO order (while watching for the client going away, which
cancels the generation at its next token) and returns a ``Run`` whose chunks the
protocol modules format.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive

from slmchat.engine import runtimes
from slmchat.engine.generation.decode import CancelToken, GenerationChunk
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model.spec import ModelSpec
from slmchat.engine.session import EngineLike
from slmchat.errors import SlmChatError
from slmchat.server.catalog import Catalog, Discover
from slmchat.server.convlog import ConversationLog
from slmchat.server.errors import APIError
from slmchat.server.requests import GenRequest, lone_surrogate_at
from slmchat.server.slot import (
    ClientGone,
    Done,
    Failed,
    Generation,
    Planned,
    Slot,
    as_api_error,
    chunk_error,
)

log = logging.getLogger("slmchat.server")

MAX_BODY_BYTES = 4 * 1024 * 1024
BODY_TIMEOUT_S = 30.0  # a body whose next bytes take longer than this gets 408
HEADER_TIMEOUT_S = 15.0  # headers still incomplete this long after they began: 408
_DRAIN_LIMIT = 64 * 1024 * 1024  # read (and drop) this much of an oversized body, then stop


@dataclass
class ServerConfig:
    """How the server behaves; the CLI fills it from its flags."""

    api_key: str | None = None
    host: str = "127.0.0.1"  # the address served (--host): its name passes the Host check
    max_queue: int = 8
    max_body_bytes: int = MAX_BODY_BYTES
    body_timeout_s: float = BODY_TIMEOUT_S
    header_timeout_s: float = HEADER_TIMEOUT_S
    cors_origins: tuple[str, ...] = ()
    defaults: SamplingParams = field(default_factory=SamplingParams)
    allow_swap: bool = True
    base_spec: ModelSpec = field(default_factory=ModelSpec)


class ServerState:
    """Everything the routes share: the engine, the model names, the slot, the log."""

    def __init__(self, engine: EngineLike, config: ServerConfig,
                 log_store: ConversationLog | None = None, discover: Discover | None = None) -> None:
        self.engine = engine
        self.config = config
        self.catalog = Catalog(engine, config.base_spec, config.allow_swap, discover)
        self.slot = Slot(config.max_queue)
        self.log = log_store
        self.started = int(time.time())
        self.generations: set[Generation] = set()

    def begin_shutdown(self) -> None:
        """New requests get 503, waiting ones too; running ones stop at the next token
        and end their streams with a final event."""
        self.slot.close()
        for gen in list(self.generations):
            gen.cancel.cancel()

    def join_generations(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        for gen in list(self.generations):
            gen.join(max(0.0, deadline - time.monotonic()))


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.slm
    return state


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


class Run:
    """One admitted generation: its worker, its plan, and the disconnect watch."""

    def __init__(self, gen: Generation, watch: DisconnectWatch, t0: float) -> None:
        self.gen = gen
        self.watch = watch
        self.created = int(time.time())
        self.t0 = t0  # perf_counter when the request arrived (Ollama's total_duration)
        self.reasoning = ""  # collect(): the reply's reasoning block, apart from its text

    @property
    def planned(self) -> Planned:
        assert self.gen.planned is not None
        return self.gen.planned

    @property
    def model(self) -> str:
        info = self.gen.engine.info
        return info.name if info is not None else "none"

    def close(self) -> None:
        """Stop listening and stop the model (a no-op when the reply already ended)."""
        self.watch.stop()
        self.gen.cancel.cancel()

    async def chunks(self) -> AsyncIterator[GenerationChunk]:
        """Every chunk to the last; a failure raises APIError (text already yielded stays)."""
        while True:
            item = await self.gen.next()
            if isinstance(item, Done):
                return
            if isinstance(item, Failed):
                raise as_api_error(item.error)
            if isinstance(item, GenerationChunk):
                if item.finish_reason == "error":
                    info = self.gen.engine.info
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


async def admit(request: Request, req: GenRequest, api: str) -> Run:
    """Wait for the model in FIFO order and start the generation; 4xx/5xx on failure."""
    t0 = time.perf_counter()
    state = state_of(request)
    cancel = CancelToken()
    watch = DisconnectWatch(request.receive, cancel)
    try:
        await asyncio.to_thread(state.catalog.resolve, req.model)  # 404 before queueing
        await state.slot.acquire(watch.gone)
        try:
            gen = Generation(state.engine, state.slot, req, state.config.defaults, cancel,
                             catalog=state.catalog,
                             recorder=_recorder(state, request, api) if state.log else None)
            state.generations.add(gen)
            gen.on_done = lambda: state.generations.discard(gen)
            gen.start()
        except BaseException:
            state.slot.release()
            raise
        await gen.first()
    except ClientGone:
        watch.stop()
        cancel.cancel()
        raise APIError(499, "the client closed the request") from None
    except BaseException:
        watch.stop()
        cancel.cancel()
        raise
    return Run(gen, watch, t0)


async def ensure_model(request: Request, name: str | None) -> str:
    """Load ``name`` if it is another local model (swap), in turn with generations."""
    state = state_of(request)
    choice = await asyncio.to_thread(state.catalog.resolve, name)
    if choice.load is None:
        return choice.name
    await state.slot.acquire(asyncio.Event())
    try:
        await asyncio.to_thread(state.engine.load, choice.load)
    except SlmChatError as exc:
        raise APIError(400, str(exc), param="model") from None
    finally:
        state.slot.release()
    return state.catalog.current


def _recorder(state: ServerState, request: Request, api: str) -> Any:
    client = request.client.host if request.client else None
    endpoint = request.url.path
    started = time.time()

    def record(gen: Generation, text: str) -> None:
        assert state.log is not None
        try:
            state.log.record(api=api, endpoint=endpoint, client=client,
                             messages=gen.req.messages, reply=text, last=gen.last_seen,
                             params=gen.planned_params, info=state.engine.info, started=started)
        except Exception as exc:  # logging must never fail a request
            log.warning("could not log the conversation: %s", exc)

    return record
