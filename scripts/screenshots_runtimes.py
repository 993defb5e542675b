"""Screenshot 19: a model from an Ollama store chatting on the llamacpp runtime.

The default model's own GGUF file is put into a throwaway Ollama store as
``smollm2:135m`` (a hard link, as Ollama keeps its blobs), the real app opens it by that
name and answers one question; the status bar shows the Q4_1 file running on llama.cpp.
Usage: ``python scripts/screenshots_runtimes.py``
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_runtimes import ollama_store

from screenshots import SIZE, real_app, save_shot, throwaway_dir, wait_reply


async def main() -> int:
    tmp = throwaway_dir()
    os.environ["SLMCHAT_TOOLS_HOME"] = str(tmp / "home")
    from slmchat.engine.model.default import gguf_path
    from slmchat.engine.model.discovery import resolve_name

    ollama_store(tmp / "home", "smollm2:135m", gguf_path())
    os.environ["SLMCHAT_MODEL__PATH"] = resolve_name("smollm2:135m")
    app = real_app(tmp, max_new_tokens=60)
    async with app.run_test(size=SIZE) as pilot:
        while app.chat.engine.info is None:
            await pilot.pause(0.2)
        await pilot.press(*"What is the opposite of cold?", "enter")
        await wait_reply(app, pilot)
        await save_shot(app, pilot, "19-ollama-model-on-llamacpp", clear=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
