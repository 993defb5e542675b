"""Pilot tests of the model panel inside a minimal host app."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from textual.app import App
from textual.widgets import Button, DataTable, Input, Select, Static

from slmchat.config import Settings
from slmchat.engine.model.discovery import discover
from slmchat.engine.model.spec import ModelSpec
from slmchat.engine.session import Engine
from slmchat.errors import ModelLoadError
from slmchat.i18n import t
from slmchat.tui.screens.dialogs import TextPrompt
from slmchat.tui.screens.models import ModelsPanel, ModelsScreen
from tests.modelkit import make_lora, truncated_copy

SIZE = (140, 44)


class Host(App[None]):
    """Pushes the panel like the chat app does, and loads the chosen spec."""

    def __init__(self, screen_factory: Any, engine: Any = None) -> None:
        super().__init__()
        self.factory = screen_factory
        self.engine = engine
        self.results: list[ModelSpec | None] = []
        self.errors: list[str] = []

    def on_mount(self) -> None:
        self.push_screen(self.factory(), self.done)

    def done(self, spec: ModelSpec | None) -> None:
        self.results.append(spec)
        if spec is not None and self.engine is not None:
            try:
                self.engine.load(spec)
            except ModelLoadError as exc:
                self.errors.append(str(exc))


@pytest.fixture(scope="module")
def panel_models(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path,
                 tiny_gpt2_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("panel")
    shutil.copytree(tiny_llama_dir, root / "llama")
    shutil.copytree(tiny_gpt2_dir, root / "gpt2")
    make_lora(root / "llama", root / "llama-lora")
    truncated_copy(tiny_llama_dir, root / "broken")
    return root


@pytest.fixture
def settings(panel_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hub"))
    s = Settings()
    s.model.dirs = [str(panel_models)]
    return s


def _screen(settings: Settings, engine: Any = None) -> Any:
    return lambda: ModelsScreen(engine=engine, settings=settings, discover_fn=lambda: discover(
        settings, include_default=False))


async def _ready(pilot: Any) -> ModelsPanel:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, ModelsScreen)
    return screen.panel


def _names(screen: ModelsPanel) -> list[str]:
    return [e.name for e in screen.shown]


async def test_lists_models_and_filters_as_you_type(settings: Settings) -> None:
    app = Host(_screen(settings))
    async with app.run_test(size=SIZE) as pilot:
        screen = await _ready(pilot)
        assert sorted(_names(screen)) == ["panel0/broken", "panel0/gpt2", "panel0/llama",
                                          "panel0/llama-lora"]
        assert screen.query_one("#models-table", DataTable).row_count == 4
        screen.query_one("#filter", Input).focus()
        await pilot.press(*"gpt2")
        await pilot.pause()
        assert [n.rsplit("/", 1)[-1] for n in _names(screen)] == ["gpt2"]
        details = str(screen.query_one("#details", Static).render())
        assert "GPT2LMHeadModel" in details and "chat template: no" in details
        await pilot.press("backspace", "backspace", "backspace", "backspace", *"lora")
        await pilot.pause()
        assert [n.rsplit("/", 1)[-1] for n in _names(screen)] == ["llama-lora"]
        assert "LoRA" in str(screen.query_one("#details", Static).render())


async def test_cpu_warning_and_int8_offer(settings: Settings) -> None:
    app = Host(_screen(settings))
    async with app.run_test(size=SIZE) as pilot:
        screen = await _ready(pilot)
        assert "Memory estimate" in str(screen.query_one("#estimate", Static).render())
        assert not screen.query_one("#use-int8", Button).display
        screen.query_one("#opt-quant", Select).value = "8bit"
        await pilot.pause()
        assert str(screen.query_one("#cpu-warning", Static).render()) == t("models.cpu_bnb_warning")
        assert screen.query_one("#use-int8", Button).display
        await pilot.click("#use-int8")
        await pilot.pause()
        assert screen.query_one("#opt-quant", Select).value == "cpu-int8"
        assert str(screen.query_one("#cpu-warning", Static).render()) == ""


async def test_load_dismisses_with_spec_and_bad_model_keeps_old(
    settings: Settings, panel_models: Path, tiny_llama_dir: Path,
) -> None:
    engine = Engine()
    engine.load(ModelSpec(path=str(tiny_llama_dir), device="cpu"))
    old = engine.info
    app = Host(_screen(settings, engine), engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _ready(pilot)
        assert "Loaded:" in str(screen.query_one("#current", Static).render())
        screen.query_one("#filter", Input).value = "broken"
        await pilot.pause()
        assert "truncated" in str(screen.query_one("#details", Static).render())
        screen.query_one("#opt-dtype", Select).value = "bf16"
        screen.query_one("#opt-quant", Select).value = "4bit"
        screen.query_one("#opt-4bit-type", Select).value = "fp4"
        await pilot.pause()
        await pilot.press("f5")
        await pilot.pause()
    spec = app.results[-1]
    assert spec is not None and spec.path.endswith("broken")
    assert (spec.dtype, spec.quant, spec.bnb_4bit_quant_type) == ("bf16", "4bit", "fp4")
    assert app.errors and "truncated" in app.errors[0] and engine.info is old


async def test_escape_closes_without_spec(settings: Settings) -> None:
    app = Host(_screen(settings))
    async with app.run_test(size=SIZE) as pilot:
        await _ready(pilot)
        await pilot.press("escape")
        await pilot.pause()
    assert app.results == [None]


async def test_quantize_and_export_run_in_workers(settings: Settings, tmp_path: Path) -> None:
    from slmchat.paths import models_dir
    from slmchat.tui.messages import TaskProgress

    seen: list[Any] = []
    app = Host(_screen(settings))
    async with app.run_test(size=SIZE, message_hook=seen.append) as pilot:
        screen = await _ready(pilot)
        screen.query_one("#filter", Input).value = "llama-lora"
        await pilot.pause()
        await pilot.click("#export")
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        status = str(screen.query_one("#task-status", Static).render())
        assert status.startswith(f"Exported to {models_dir()}/panel0-llama-lora-merged"), status
        assert "top1_agree=1.000" in status
        steps = [m.text for m in seen if isinstance(m, TaskProgress)]
        assert steps[0] == "loading" and steps[-1] == "done"  # bursts may collapse
        screen.query_one("#filter", Input).value = "panel0/llama safetensors"
        await pilot.pause()
        assert [e.name for e in screen.shown] == ["panel0/llama"]
        screen.query_one("#opt-quant", Select).value = "cpu-int8"
        await pilot.pause()
        await pilot.click("#quantize")
        await pilot.pause()
        assert isinstance(app.screen, TextPrompt)  # where to save: suggested, editable
        box = app.screen.query_one(Input)
        assert box.value == str(models_dir() / "panel0-llama-cpu-int8")
        box.value = str(tmp_path / "chosen" / "my-int8")
        await pilot.press("enter")
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        status = str(screen.query_one("#task-status", Static).render())
        assert status.startswith(f"Saved to {tmp_path / 'chosen' / 'my-int8'}:"), status
        assert not screen.busy
    assert (tmp_path / "chosen" / "my-int8").is_dir()
    made = sorted(p.name for p in models_dir().iterdir())
    assert made == ["panel0-llama-lora-f16.gguf", "panel0-llama-lora-merged"]


async def test_bitsandbytes_options_show_only_for_4bit(settings: Settings) -> None:
    app = Host(_screen(settings))
    async with app.run_test(size=SIZE) as pilot:
        screen = await _ready(pilot)
        shown = {"none": False, "cpu-int8": False, "8bit": False, "4bit": True}
        for quant, visible in shown.items():
            screen.query_one("#opt-quant", Select).value = quant
            await pilot.pause()
            assert [w.display for w in screen.query(".-bnb4")] == [visible] * 3, quant


async def test_onnx_int8_choice_loads_and_saves_on_the_onnx_runtime(settings: Settings) -> None:
    from slmchat.paths import models_dir
    from slmchat.tui.screens.models import ONNX_CHOICE

    engine = Engine()
    app = Host(_screen(settings), engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _ready(pilot)
        screen.query_one("#filter", Input).value = "panel0/llama safetensors"
        await pilot.pause()
        screen.query_one("#opt-quant", Select).value = ONNX_CHOICE
        await pilot.pause()
        spec = screen.current_spec()
        assert spec is not None and spec.runtime == "onnx" and spec.quant == "none"
        await pilot.click("#quantize")
        await pilot.pause()
        assert isinstance(app.screen, TextPrompt)
        assert app.screen.query_one(Input).value == str(models_dir() / "panel0-llama-onnx-int8")
        await pilot.press("enter")
        for _ in range(3):
            await app.workers.wait_for_complete()
            await pilot.pause()
        status = str(screen.query_one("#task-status", Static).render())
        assert status.startswith("Saved") and "panel0-llama-onnx-int8" in status, status
        assert screen.selected is not None and screen.selected.format == "onnx-int8"
        screen.action_load()
        await pilot.pause()
    assert app.errors == [] and engine.info is not None and engine.info.runtime == "onnx"
    assert (models_dir() / "panel0-llama-onnx-int8" / "genai_config.json").is_file()


async def test_an_unreadable_models_folder_does_not_empty_the_panel(
        settings: Settings, panel_models: Path, tmp_path: Path) -> None:
    link = tmp_path / "proc-link"
    link.symlink_to("/proc/1/cwd")  # unreadable even for root in a container
    try:
        link.is_dir()
        pytest.skip("/proc/1/cwd is readable here")
    except PermissionError:
        pass
    settings.model.dirs = [str(link), str(panel_models)]
    app = Host(lambda: ModelsScreen(settings=settings, discover_fn=lambda: discover(settings)))
    async with app.run_test(size=SIZE) as pilot:
        screen = await _ready(pilot)
        by_name = {e.name: e for e in screen.shown}
        assert "SmolLM2-135M-Instruct" in by_name  # the default model is still there
        assert "panel0/llama" in by_name
        assert by_name["proc-link"].problem == "skipped, cannot read: Permission denied"
        assert t("models.none_found") not in str(screen.query_one("#details", Static).render())
