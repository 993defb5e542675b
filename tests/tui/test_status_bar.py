"""The status bar says whether the offline switches are in force."""

from __future__ import annotations

import pytest

from slmchat.tui.widgets.status_bar import StatusBar


def test_offline_badge(monkeypatch: pytest.MonkeyPatch) -> None:
    bar = StatusBar()
    bar.memory_probe = lambda: None
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "● offline" in bar.render_status().plain
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert "offline switches not set" in bar.render_status().plain


def test_runtime_and_precision_shown() -> None:
    from dataclasses import replace

    from tests.tui.fakes import fake_info

    bar = StatusBar()
    bar.memory_probe = lambda: None
    bar.info = replace(fake_info(), dtype="int8", runtime="onnx", runtime_tag="onnx")
    assert "int8  cpu  onnx" in bar.render_status().plain
    bar.info = replace(fake_info(), dtype="Q4_K_M", runtime="llamacpp", runtime_tag="llama.cpp")
    assert "Q4_K_M  cpu  llama.cpp" in bar.render_status().plain
    bar.info = fake_info()
    assert "onnx" not in bar.render_status().plain


def test_speculative_acceptance_shown_after_a_reply() -> None:
    from slmchat.i18n import set_language

    bar = StatusBar()
    bar.memory_probe = lambda: None
    assert "drafts kept" not in bar.render_status().plain
    bar.speculative = (34, 50)
    assert "drafts kept 34/50" in bar.render_status().plain
    set_language("ja")
    try:
        assert "下書き採用 34/50" in bar.render_status().plain
    finally:
        set_language("en")


def test_provenance_records_the_speculative_mode_and_counts() -> None:
    from slmchat.engine.generation.decode import GenerationChunk
    from slmchat.engine.generation.prompting import ChatMessage
    from slmchat.engine.generation.sampling import SamplingParams
    from slmchat.tui.generation import ReplyJob, provenance

    job = ReplyJob(msg_id=1, messages=[ChatMessage("user", "hi")], params=SamplingParams(),
                   info=None)
    base = dict(text="", new_tokens=9, prompt_tokens=3, ttft_s=0.1, prefill_tps=1.0,
                decode_tps=2.0, seed=1, finish_reason="stop")
    spec = GenerationChunk(**base, speculative="lookup", drafted=8, accepted=5)  # type: ignore[arg-type]
    assert provenance(job, spec, "done", None)["speculative"] == {
        "mode": "lookup", "drafted": 8, "accepted": 5}
    plain = GenerationChunk(**base)  # type: ignore[arg-type]
    assert "speculative" not in provenance(job, plain, "done", None)
