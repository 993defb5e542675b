"""What the server is and holds: its configuration (the CLI fills it from its flags)
and the state every route shares (the engine, the model names, the gate, the log).

``build_app`` keeps the ``ServerState`` in ``app.state.slm``; ``state_of(request)``
gets it back in a route.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from starlette.requests import Request

from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model.spec import ModelSpec
from slmchat.engine.session import EngineLike
from slmchat.server.catalog import Catalog, Discover
from slmchat.server.convlog import ConversationLog
from slmchat.server.gate import Gate
from slmchat.server.worker import Worker

MAX_BODY_BYTES = 4 * 1024 * 1024
BODY_TIMEOUT_S = 30.0  # a body whose next bytes take longer than this gets 408
HEADER_TIMEOUT_S = 15.0  # headers still incomplete this long after they began: 408


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
    """Everything the routes share: the engine, the model names, the gate, the log, and
    the workers running now."""

    def __init__(self, engine: EngineLike, config: ServerConfig,
                 log_store: ConversationLog | None = None, discover: Discover | None = None) -> None:
        self.engine = engine
        self.config = config
        self.catalog = Catalog(engine, config.base_spec, config.allow_swap, discover)
        self.gate = Gate(config.max_queue)
        self.log = log_store
        self.started = int(time.time())
        self.workers: set[Worker] = set()

    def begin_shutdown(self) -> None:
        """New requests get 503, waiting ones too; running ones stop at the next token
        and end their streams with a final event."""
        self.gate.close()
        for worker in list(self.workers):
            worker.cancel.cancel()

    def join_workers(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        for worker in list(self.workers):
            worker.join(max(0.0, deadline - time.monotonic()))


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.slm
    return state
