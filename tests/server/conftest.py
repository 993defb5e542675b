"""Fixtures for the server tests: the tiny random Llama behind an Engine."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_engine(tiny_llama_dir: Path):
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.session import Engine

    engine = Engine()
    engine.load(ModelSpec(path=str(tiny_llama_dir), device="cpu", dtype="fp32"))
    return engine
