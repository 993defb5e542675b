"""Screenshots of chatting with local files and curating replies, on the real default model.

``python scripts/screenshots_files.py``: attaches a folder of documents that ship on the
machine (gzip's man page rendered to text, Python's IDLE guide as HTML), asks a question,
opens a cited passage, edits and marks replies, and exports them for training. Writes
screenshots/10-*.svg|png .. 13-*. Throw-away data/config folders, greedy decoding.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshots import SIZE, real_app, save_shot, throwaway_dir, wait_reply


def docs_folder(root: Path) -> Path:
    docs = root / "docs"
    docs.mkdir(parents=True)
    env = {**os.environ, "MANWIDTH": "80"}
    raw = subprocess.run(["man", "-E", "ascii", "1", "gzip"], capture_output=True, env=env,
                         check=False).stdout
    text = subprocess.run(["col", "-bx"], input=raw, capture_output=True, check=False).stdout
    (docs / "gzip.1.txt").write_bytes(text)
    idle = Path(sysconfig.get_paths()["stdlib"]) / "idlelib" / "help.html"
    shutil.copyfile(idle, docs / "idle-help.html")
    return docs


async def main() -> int:
    tmp = throwaway_dir()
    docs = docs_folder(tmp)
    app = real_app(tmp, max_new_tokens=80)
    store = app.store

    async def shot(name: str) -> None:
        await save_shot(app, pilot, name)

    async with app.run_test(size=SIZE) as pilot:
        while not app.chat.model_ready:
            await pilot.pause(0.3)
        app.chat.prompt.set_text(f"/attach {docs}")
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause(0.5)
        app.clear_notifications()
        app.chat.prompt.set_text("Which gzip option keeps the input files?")
        await pilot.press("enter")
        await wait_reply(app, pilot)
        await shot("10-files-cited-reply")
        button = app.chat.log_view.views()[-1].query("Citations Button").first()
        button.press()
        await pilot.pause(0.8)
        await shot("11-files-open-citation")
        await pilot.press("escape")
        await pilot.press("ctrl+l", "e")
        await pilot.pause(0.5)
        app.screen.query_one("TextArea").load_text(
            "Use `-k` (`--keep`): gzip then keeps the input files instead of deleting them.")
        await shot("12-edit-reply")
        await pilot.press("ctrl+s")
        await pilot.pause(0.5)
        await app.chat.run_action("export_training")
        await pilot.pause(0.5)
        await shot("13-marked-and-exported")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
