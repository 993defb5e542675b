"""The model panel lists other tools' models under the names those tools use."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from slmchat.engine.model.discovery import discover
from slmchat.tui.screens.models import ModelsScreen
from tests.storekit import ollama_model, write_gguf
from tests.tui.test_models_screen import SIZE, Host


async def test_panel_shows_ollama_names_and_broken_manifests(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    store = home / ".ollama" / "models"
    ollama_model(store, "qwen2.5:0.5b", write_gguf(tmp_path / "q.gguf"))
    bad = store / "manifests" / "registry.ollama.ai" / "library" / "broken" / "latest"
    bad.parent.mkdir(parents=True)
    bad.write_text("{")
    monkeypatch.setenv("SLMCHAT_TOOLS_HOME", str(home))
    app = Host(lambda: ModelsScreen(discover_fn=lambda: discover(
        include_default=False, include_hf_cache=False)))
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        table = app.screen.query_one("#models-table", DataTable)
        names = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert names == ["ollama: broken:latest", "ollama: qwen2.5:0.5b"]  # manifest order
        assert "⚠" in str(table.get_row_at(0)[1])
        assert "⚠" not in str(table.get_row_at(1)[1])
        table.move_cursor(row=0)
        await pilot.pause()
        details = str(app.screen.query_one("#details", Static).render())
        assert "broken manifest" in details
