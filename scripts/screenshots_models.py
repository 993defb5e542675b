"""Screenshots of the model panel: screenshots/08-models*.svg and .png.

Renders the real ``ModelsScreen`` over real discovery (the default model plus the
folders given on the command line, e.g. a quantized copy and an exported GGUF).
Usage: ``python scripts/screenshots_models.py [MODEL_DIR_OR_FOLDER ...]``
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from textual.app import App

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshots import OUT, to_png


async def shoot(dirs: list[str]) -> None:
    from textual.widgets import Select

    from slmchat.config import load_settings
    from slmchat.tui.screens.models import ModelsScreen

    settings, _ = load_settings()
    settings.model.dirs = [*settings.model.dirs, *dirs]

    class Host(App[None]):
        TITLE = "slmchat"

        def on_mount(self) -> None:
            self.push_screen(ModelsScreen(engine=None, settings=settings))

    app = Host()
    async with app.run_test(size=(150, 42)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause(0.5)
        svg = Path(app.save_screenshot("08-models.svg", str(OUT)))
        to_png(svg)
        print(f"wrote {svg}")
        app.screen.query_one("#opt-quant", Select).value = "8bit"
        await pilot.pause(0.3)
        svg = Path(app.save_screenshot("09-models-cpu-warning.svg", str(OUT)))
        to_png(svg)
        print(f"wrote {svg}")


def main() -> int:
    asyncio.run(shoot(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
