"""Fixtures for the server tests: the tiny random Llama behind an Engine, and ``live``:
that engine served on a free loopback port (greedy, 12 new tokens by default), for the
client tests. A module that serves something else defines its own ``live``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.live import Live, live_server


@pytest.fixture(scope="session")
def tiny_engine(tiny_llama_dir: Path):
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.session import Engine

    engine = Engine()
    engine.load(ModelSpec(path=str(tiny_llama_dir), device="cpu", dtype="fp32"))
    return engine


@pytest.fixture(scope="module")
def live(tiny_engine) -> Iterator[Live]:
    from slmchat.engine.generation.sampling import SamplingParams
    from slmchat.server.state import ServerConfig

    config = ServerConfig(defaults=SamplingParams(temperature=0, max_new_tokens=12))
    with live_server(tiny_engine, config) as server:
        yield server
