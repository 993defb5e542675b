"""The Japanese UI on the real default model: screenshots/14-japanese.* (a chat in
Japanese with a Japanese title in the sidebar) and 15-japanese-inspector.*.

Drives the real app (greedy, short replies) in a throw-away data folder with
``ui.language = "ja"``. SmolLM2-135M is an English model: its answers to Japanese are
weak, and the picture shows them as they are. Usage: ``python scripts/screenshots_ja.py``
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from screenshots import OUT, SIZE, to_png, wait_reply

QUESTIONS = ("日本の首都はどこですか?", "東京で有名な場所を三つ教えてください。")
TYPED = "次は京都について教えてください。"


async def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="slmchat-shots-"))
    os.environ["SLMCHAT_DATA_DIR"] = str(tmp / "data")
    os.environ["SLMCHAT_CONFIG_DIR"] = str(tmp / "config")

    from slmchat.config import Settings
    from slmchat.engine.devices import configure_threads
    from slmchat.engine.session import Engine
    from slmchat.engine.store.store import Store
    from slmchat.i18n import resolve_language, set_language
    from slmchat.tui.app import SlmChatApp

    configure_threads()
    settings = Settings()
    settings.ui.language = "ja"
    settings.generation.temperature = 0.0
    settings.generation.max_new_tokens = 80
    set_language(resolve_language(settings.ui.language))  # as `slmchat chat` does
    store = Store(tmp / "data" / "conversations.db")
    old = store.create_conversation("京都旅行の計画")
    store.add_message(old.id, "user", "京都で紅葉を見るならいつがいいですか?")
    app = SlmChatApp(settings, Engine(), store, persist_settings=False)
    OUT.mkdir(exist_ok=True)

    async def shot(name: str) -> None:
        app.clear_notifications()
        app.chat.prompt.cursor_blink = False
        await pilot.pause(0.3)
        svg = Path(app.save_screenshot(f"{name}.svg", str(OUT)))
        png = to_png(svg)
        print(f"wrote {svg.name}" + (f" and {png.name}" if png else ""))

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
