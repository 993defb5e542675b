"""Screenshots of the developer's workbench on the real default model:
screenshots/10-compare.*, 11-branch.*, 12-inspector.*, 13-models-other-tools.*.

Drives the real app (greedy, short replies) in a throw-away data folder: compares the
default model with its cpu-int8 copy, keeps one reply, regenerates a reply to make a
branch, and opens the prompt inspector. The model list shot uses a fake Ollama store
and llama.cpp cache (small GGUF files written here), since this machine has neither.
Usage: ``python scripts/screenshots_workbench.py``
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from screenshots import OUT, SIZE, real_app, save_shot, throwaway_dir, to_png, wait_reply


async def main() -> int:
    tmp = throwaway_dir()
    os.environ["SLMCHAT_TOOLS_HOME"] = str(tmp / "home")

    from slmchat.tui.screens.compare import SAME_INT8, CompareScreen, CompareSetup

    app = real_app(tmp, max_new_tokens=60)
    store = app.store

    async def shot(name: str) -> None:
        await save_shot(app, pilot, name, clear=True)

    async with app.run_test(size=SIZE) as pilot:
        while app.chat.engine.info is None:
            await pilot.pause(0.2)
        # 1. Compare the default model with its cpu-int8 copy on one prompt.
        app.chat.compare_discover = list  # type: ignore[method-assign]  # no scan needed
        await pilot.press("f9")
        await pilot.pause(0.5)
        setup = app.screen
        assert isinstance(setup, CompareSetup)
        from textual.widgets import Button, Select

        setup.query_one("#cmp-model", Select).value = SAME_INT8
        setup.query_one("#ok", Button).press()
        while not isinstance(app.screen, CompareScreen) or not app.screen.sides:
            await pilot.pause(0.2)
        screen = app.screen
        await pilot.press(*"Name three uses of a paperclip.", "enter")
        while screen.running or not screen.sides["right"].status:
            await pilot.pause(0.2)
        await pilot.pause(0.5)
        await pilot.press("alt+left")
        await shot("10-compare")
        await pilot.press("escape")
        await pilot.pause(0.5)
        # 2. A branch: regenerate the reply with another temperature.
        app.chat.chat_settings["temperature"] = 0.9
        app.chat.chat_settings["seed"] = 7
        await pilot.press("ctrl+r")
        await pilot.pause(0.3)
        await wait_reply(app, pilot)
        await pilot.press("ctrl+l")
        await pilot.pause(0.3)
        await shot("11-branch")
        # 3. The prompt inspector on the next reply, with a follow-up typed.
        await pilot.press("escape")
        app.chat.prompt.focus()
        await pilot.press(*"Which one is the most useful?")
        await pilot.press("f8")
        await pilot.pause(1.5)
        await shot("12-inspector")
        await pilot.press("escape")
    store.close()
    await models_shot(tmp)
    return 0


async def models_shot(tmp: Path) -> None:
    import json

    from textual.app import App

    from slmchat.engine.model.default import gguf_path
    from slmchat.engine.model.discovery import discover
    from slmchat.tui.screens.models import ModelsScreen
    from tests.storekit import llama_cpp_download, ollama_model, write_gguf

    home = tmp / "home"
    smol = gguf_path()  # the wheel's SmolLM2 Q4_1 GGUF: a real model in a fake store
    store = home / ".ollama" / "models"
    ollama_model(store, "smollm2:135m", smol, params={"temperature": 0.2})
    ollama_model(store, "smollm2:latest", smol)
    gone = ollama_model(store, "tinyllama:1.1b", write_gguf(tmp / "g" / "t.gguf"))
    digest = json.loads(gone.read_text())["layers"][0]["digest"]
    (store / "blobs" / digest.replace(":", "-")).unlink()  # a blob removed by hand
    broken = store / "manifests" / "registry.ollama.ai" / "library" / "phi3" / "mini"
    broken.parent.mkdir(parents=True)
    broken.write_text("{")
    llama_cpp_download(home / ".cache" / "llama.cpp", "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF",
                       "Q4_1", smol, "SmolLM2-135M-Instruct.Q4_1.gguf")

    class Host(App[None]):
        TITLE = "slmchat"

        def on_mount(self) -> None:
            self.push_screen(ModelsScreen(discover_fn=lambda: discover(include_hf_cache=False)))

    app = Host()
    async with app.run_test(size=(170, 36)) as pilot:
        from textual.widgets import DataTable

        await app.workers.wait_for_complete()
        await pilot.pause(0.5)
        app.screen.panel._fill_table("")  # type: ignore[attr-defined]  # widths after layout
        await pilot.pause(0.3)
        app.screen.query_one("#models-table", DataTable).move_cursor(row=2)
        await pilot.pause(0.5)
        svg = Path(app.save_screenshot("13-models-other-tools.svg", str(OUT)))
        to_png(svg)
        print(f"wrote {svg.name}")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
