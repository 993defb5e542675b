"""Screenshots of the fine-tune panel: screenshots/07-finetune*.svg and .png.

Renders the real ``FinetuneScreen`` over copies of real run folders (default: the newest
finished run and, if any, a running one under the runs dir; or the folders given), so the
chart, perplexities and progress are what a real run wrote. Nothing is started.
Usage: ``python scripts/screenshots_finetune.py [RUN_DIR ...]``
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

from textual.app import App

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshots import OUT, to_png


async def shoot(root: Path, name: str) -> None:
    from slmchat.config import Settings
    from slmchat.engine.finetune.rundir import list_runs
    from slmchat.tui.screens.finetune import FinetuneScreen

    class Host(App[None]):
        TITLE = "slmchat"

        def on_mount(self) -> None:
            self.push_screen(FinetuneScreen(settings=Settings(), runs_root=root))

    app = Host()
    async with app.run_test(size=(150, 42)) as pilot:
        await pilot.pause(0.5)
        screen = app.screen
        done = [r for r in list_runs(root) if r.state == "done"]
        if done:
            screen.panel.select_run(done[0].path)  # type: ignore[attr-defined]
            await pilot.pause(0.3)
        svg = Path(app.save_screenshot(f"{name}.svg", str(OUT)))
        to_png(svg)
        print(f"wrote {svg}")


def main() -> int:
    from slmchat.engine.finetune.rundir import list_runs

    sources = [Path(p) for p in sys.argv[1:]] or [r.path for r in list_runs()[:3]]
    if not sources:
        print("no run folders: run `slmchat finetune FILE` first")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for src in sources:
            shutil.copytree(src, root / src.name, ignore=shutil.ignore_patterns("checkpoints"))
        asyncio.run(shoot(root, "07-finetune-done"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
