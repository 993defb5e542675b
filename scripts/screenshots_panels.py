"""Screenshots of the docked panels on the real default model (issue 17):
screenshots/16-finetune-docked.svg/.png (a real 40-step LoRA run beside a conversation,
chatting while it trains) and 17-quick-switcher.svg/.png (F12 after the run: the tuned
model and the default, recent first, with format, size and runtime).

Uses a throw-away data folder (its own runs and conversations) and a small notes file;
the fine-tune is a real background process (about a minute on two cores).
Usage: ``python scripts/screenshots_panels.py``
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshots import real_app, save_shot, throwaway_dir, wait_reply

SIZE = (160, 46)
WATCH_S = 2.5  # a little more than the fine-tune watch's interval
NOTES = """# Field notes on herons

The grey heron stands still in shallow water for a long time before it strikes.
Herons nest in colonies called heronries, often high in tall trees near rivers.
A heron swallows a fish head first so the spines fold flat.
In flight a heron folds its neck into an S shape, unlike a crane or a stork.
Young herons stay in the nest for about seven weeks before they fledge.
"""


async def main() -> int:
    tmp = throwaway_dir("slmchat-panels-")
    notes = tmp / "heron-notes.md"
    notes.write_text(NOTES * 30, encoding="utf-8")

    from textual.widgets import Button, Input

    from slmchat.engine.model.spec import ModelSpec
    from slmchat.tui.widgets.offer_bar import OfferBar

    app = real_app(tmp, max_new_tokens=120)
    store = app.store

    async def shot(name: str) -> None:
        await save_shot(app, pilot, name, settle=0.5)

    async with app.run_test(size=SIZE) as pilot:
        while not app.chat.model_ready:
            await pilot.pause(0.2)
        await pilot.press(*"What do herons eat?", "enter")
        await wait_reply(app, pilot)
        # The fine-tune panel docked beside the chat: a 40-step LoRA run on the notes.
        await pilot.press("ctrl+t")
        await pilot.pause(0.5)
        for field, value in (("ft-file", str(notes)), ("ft-steps", "40"),
                             ("ft-block", "128"), ("ft-batch", "2")):
            app.chat.query_one(f"#{field}", Input).value = value
        await pilot.press("f7")
        await pilot.press("ctrl+t")  # back to the prompt; the panel stays
        await pilot.press(*"Where do herons nest?", "enter")
        await wait_reply(app, pilot)
        panel = app.chat.side.panel
        while panel is not None and (panel.summary is None or panel.summary.step < 24):
            await pilot.pause(0.5)
        app.clear_notifications()
        await shot("16-finetune-docked")
        while panel is not None and (panel.summary is None or not panel.summary.finished):
            await pilot.pause(0.5)
        await pilot.pause(WATCH_S)  # the status-bar watch sees the end: the offer
        app.chat.close_panel()
        offers = app.chat.query_one(OfferBar)
        if offers.display:
            offers.query(Button).first().press()  # "Use model"
        else:
            app.load_model(ModelSpec(path=panel.summary.out))
        await pilot.pause(0.5)
        while not app.chat.model_ready or app.chat.status.loading_name:
            await pilot.pause(0.2)
        await pilot.pause(1.0)
        app.clear_notifications()
        await pilot.press("f12")
        await pilot.pause(2.0)
        await shot("17-quick-switcher")
        await pilot.press("escape")
        # The run's Compare: base and tuned side by side in the compare view, greedy.
        from slmchat.tui.messages import CompareRunRequested
        from slmchat.tui.screens.compare import CompareScreen

        app.post_message(CompareRunRequested(panel.summary))  # what the panel's Compare posts
        while not (isinstance(app.screen, CompareScreen) and app.screen.sides):
            await pilot.pause(0.2)
        view = app.screen
        await pilot.press(*"What do herons eat?", "enter")
        await pilot.pause(0.5)
        while view.running or view._streams:
            await pilot.pause(0.2)
        app.clear_notifications()
        await shot("18-finetune-compare")
        await pilot.press("escape")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
