"""End to end on the real embedded default model (SmolLM2-135M-Instruct)."""

from __future__ import annotations

import pytest

from slmchat.config import Settings
from tests.tui.conftest import SIZE, settle

pytestmark = pytest.mark.realmodel


async def test_real_model_answers_and_records_provenance(make_app, default_engine) -> None:
    settings = Settings()
    settings.generation.temperature = 0.0
    settings.generation.max_new_tokens = 16
    app = make_app(default_engine, settings=settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.chat.model_ready
        await pilot.press(*"What is the capital of France?", "enter")
        await settle(pilot)
        user, reply = app.chat.log_view.views()
        assert user.content == "What is the capital of France?"
        assert reply.role == "assistant" and reply.status in ("done", "length")
        assert "Paris" in reply.content
        stored = app.store.messages(app.chat.conv.id)[-1]
        assert stored.content == reply.content
        prov = stored.provenance
        info = default_engine.info
        assert prov["model"]["fingerprint"] == info.fingerprint and info.fingerprint
        assert prov["sampling"]["temperature"] == 0.0
        assert 0 < prov["new_tokens"] <= 16 and prov["prompt_tokens"] > 0
        assert prov["ttft_s"] > 0
        status = str(app.chat.status.render_status())
        assert "SmolLM2-135M-Instruct" in status and "tok/s" in status
