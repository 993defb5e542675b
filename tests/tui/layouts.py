"""The app in the states a user sees most, for snapshot tests at several terminal sizes.

Each builder returns ``(app, run_before)`` for ``snap_compare``; everything on screen
is fixed (fake engine, fixed memory figure and dates, run folders under the current
directory, which the tests set to ``tmp_path``) so the pictures do not drift.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from slmchat.config import Settings
from slmchat.engine.finetune import rundir as runs
from slmchat.engine.model.discovery import ModelEntry
from slmchat.engine.store.store import Store
from slmchat.tui.app import SlmChatApp
from tests.tui.conftest import settle
from tests.tui.fakes import FakeEngine

RunBefore = Callable[[Any], Awaitable[None]]
Built = tuple[SlmChatApp, RunBefore]

CODE_REPLY = (
    "Here is a small function:\n\n```python\ndef add(a: int, b: int) -> int:\n"
    "    return a + b\n```\n\nIt returns the **sum** of `a` and `b`."
)
POEM = "Roses are red,\nviolets are blue,\nsmall models run\non laptops too."

ENTRIES = [
    ModelEntry(name="SmolLM2-135M-Instruct", path="default", source="default",
               format="safetensors", architecture="LlamaForCausalLM", n_params=134_515_008,
               size_bytes=538_090_408, has_chat_template=True, context_length=8192),
    ModelEntry(name="runs/20261128-140501-notes/model", path="runs/notes/model",
               source="run", format="lora", architecture="LoRA r=8", n_params=4_884_480,
               size_bytes=19_557_000, has_chat_template=True, base="default"),
    ModelEntry(name="models/smol-cpu-int8", path="models/smol-cpu-int8", source="models",
               format="cpu-int8", architecture="LlamaForCausalLM", n_params=134_515_008,
               size_bytes=190_004_000, has_chat_template=True, context_length=8192),
    ModelEntry(name="models/smol-f16.gguf", path="models/smol-f16.gguf", source="models",
               format="gguf", architecture="llama", n_params=134_515_008,
               size_bytes=270_800_000, has_chat_template=True, context_length=8192),
]


async def steady(pilot: Any) -> None:
    """Settle, hide the blinking cursor and the toasts, so the frame is stable."""
    await settle(pilot)
    app = pilot.app
    app.chat.prompt.cursor_blink = False
    for area in app.screen.query("Input, TextArea"):
        area.cursor_blink = False
    app.clear_notifications()
    await pilot.pause()


def make_app(db_path: Path, engine: FakeEngine) -> SlmChatApp:
    return SlmChatApp(Settings(), engine, Store(db_path), persist_settings=False)


def seed_conversations(db_path: Path) -> None:
    store = Store(db_path)
    for title, text in (("Capital of France", "What is the capital of France?"),
                        ("Sourdough starter", "How do I feed a sourdough starter?")):
        conv = store.create_conversation(title)
        store.add_message(conv.id, "user", text)
    store.close()


def chat_answered(db_path: Path) -> Built:
    seed_conversations(db_path)
    app = make_app(db_path, FakeEngine(replies=[CODE_REPLY, POEM]))

    async def run_before(pilot: Any) -> None:
        await settle(pilot)
        await pilot.press(*"Write an add function in Python", "enter")
        await settle(pilot)
        await pilot.press(*"Now a short poem", "enter")
        await steady(pilot)

    return app, run_before


def chat_settings(db_path: Path) -> Built:
    app = make_app(db_path, FakeEngine(replies=[POEM]))

    async def run_before(pilot: Any) -> None:
        await settle(pilot)
        await pilot.press(*"A poem, please", "enter")
        await settle(pilot)
        await pilot.press("ctrl+s")
        await steady(pilot)

    return app, run_before


def models_panel(db_path: Path) -> Built:
    from slmchat.tui.screens.models import ModelsScreen

    app = make_app(db_path, FakeEngine())

    async def run_before(pilot: Any) -> None:
        await settle(pilot)
        app.push_screen(ModelsScreen(engine=app.engine, settings=app.settings,
                                     discover_fn=lambda: list(ENTRIES)))
        await steady(pilot)

    return app, run_before


def fake_adapter(folder: Path) -> None:
    """A LoRA adapter's files in ``folder`` (a fingerprint is all the fakes read)."""
    (folder / "adapter_config.json").write_text('{"base_model_name_or_path": "default"}')
    (folder / "adapter_model.safetensors").write_bytes(b"lora weights " * 64)


def fake_done_run(root: Path) -> Path:
    """A finished LoRA run with a loss curve; its output folder is relative (cwd)."""
    run = root / "20261128-140501-notes"
    out = Path("runs/notes/model")
    out.mkdir(parents=True, exist_ok=True)
    run.mkdir(parents=True)
    (run / runs.ARGS).write_text(json.dumps({"data": "/home/me/notes.md",
                                             "model": "default", "method": "lora"}))
    metrics = {"eval_loss_before": math.log(21.6), "perplexity_before": 21.6,
               "eval_loss_after": math.log(17.9), "perplexity_after": 17.9}
    runs.write_status(run, state="done", pid=None, step=40, total_steps=40,
                      started_at=1000.0, metrics=metrics, out=str(out), message="done")
    runs.append_progress(run, {"step": 0, "eval_loss": math.log(21.6), "total_steps": 40})
    for s in range(1, 41):
        runs.append_progress(run, {
            "step": s, "loss": 3.4 - 0.5 * (1 - math.exp(-s / 12)), "lr": 2e-4,
            "tokens_per_s": 212.0, "eta_s": (40 - s) * 4.8, "elapsed_s": s * 4.8,
            "total_steps": 40,
            "eval_loss": math.log(21.6) - 0.19 * s / 40 if s % 8 == 0 else None})
    return run


def finetune_panel(db_path: Path) -> Built:
    from slmchat.tui.screens.finetune import FinetuneScreen

    root = Path("runs-root")
    fake_done_run(root)
    app = make_app(db_path, FakeEngine())

    async def run_before(pilot: Any) -> None:
        await settle(pilot)
        app.push_screen(FinetuneScreen(engine=app.engine, settings=app.settings,
                                       runs_root=root))
        await steady(pilot)

    return app, run_before


def compare_dialog(db_path: Path) -> Built:
    """The fine-tune panel's Compare: base and tuned side by side in the compare view."""
    from slmchat.tui.screens.finetune import FinetuneScreen

    root = Path("runs-root")
    fake_done_run(root)
    fake_adapter(Path("runs/notes/model"))
    app = make_app(db_path, FakeEngine(companion_replies_by_path={
        "default": ["Paris is the capital of France."],
        "runs/notes/model": ["Paris, on the Seine, is the capital of France."]}))

    async def run_before(pilot: Any) -> None:
        await settle(pilot)
        app.push_screen(FinetuneScreen(engine=app.engine, settings=app.settings,
                                       runs_root=root))
        await steady(pilot)
        await pilot.press("f6")
        await steady(pilot)
        await pilot.press(*"What is the capital of France?", "enter")
        view = app.screen
        for _ in range(100):  # both replies written and their Markdown streams closed
            await settle(pilot)
            if not view.running and not view._streams:
                break
        await steady(pilot)

    return app, run_before


def panel_beside_chat(kind: str) -> Callable[[Path], Built]:
    """A conversation with the model or fine-tune panel opened by its key: docked at
    160 columns, the whole screen below 110."""

    def build(db_path: Path) -> Built:
        root = Path("runs-root")
        if kind == "finetune":
            fake_done_run(root)
        seed_conversations(db_path)
        app = SlmChatApp(Settings(), FakeEngine(replies=[CODE_REPLY]), Store(db_path),
                         persist_settings=False, discover_fn=lambda: list(ENTRIES))
        app.chat.runs_root = root

        async def run_before(pilot: Any) -> None:
            await settle(pilot)
            await pilot.press(*"Write an add function in Python", "enter")
            await settle(pilot)
            await pilot.press("ctrl+o" if kind == "models" else "ctrl+t")
            await steady(pilot)

        return app, run_before

    return build


DOCKED_STATES: dict[str, Callable[[Path], Built]] = {
    "models": panel_beside_chat("models"), "finetune": panel_beside_chat("finetune"),
}
DOCKED_SIZES = {"160x48": (160, 48), "100x30": (100, 30)}

STATES: dict[str, Callable[[Path], Built]] = {
    "chat": chat_answered, "settings": chat_settings, "models": models_panel,
    "finetune": finetune_panel, "compare": compare_dialog,
}
SIZES = {"80x24": (80, 24), "100x30": (100, 30), "160x48": (160, 48)}
