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
