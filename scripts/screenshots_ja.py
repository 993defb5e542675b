"""The Japanese UI on the real default model: screenshots/14-japanese.* (a chat in
Japanese with a Japanese title in the sidebar) and 15-japanese-inspector.*.

Drives the real app (greedy, short replies) in a throw-away data folder with
``ui.language = "ja"``. SmolLM2-135M is an English model: its answers to Japanese are
weak, and the picture shows them as they are. Usage: ``python scripts/screenshots_ja.py``
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from screenshots import SIZE, real_app, save_shot, throwaway_dir, wait_reply

QUESTIONS = ("日本の首都はどこですか?", "東京で有名な場所を三つ教えてください。")
TYPED = "次は京都について教えてください。"


async def main() -> int:
    app = real_app(throwaway_dir(), max_new_tokens=80, language="ja")
    store = app.store
    old = store.create_conversation("京都旅行の計画")
    store.add_message(old.id, "user", "京都で紅葉を見るならいつがいいですか?")

    async def shot(name: str) -> None:
        await save_shot(app, pilot, name, clear=True)

    async with app.run_test(size=SIZE) as pilot:
        while app.chat.engine.info is None:
            await pilot.pause(0.2)
        for question in QUESTIONS:
            app.chat.prompt.insert(question)  # as if typed through an input method
            await pilot.press("enter")
            await wait_reply(app, pilot)
        app.chat.prompt.insert(TYPED)
        await shot("14-japanese")
        await pilot.press("f8")
        await pilot.pause(0.5)
        await app.workers.wait_for_complete()
        await pilot.pause(0.3)
        await shot("15-japanese-inspector")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
