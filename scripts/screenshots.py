"""Drive the real app on the real default model and save screenshots/*.svg and *.png.

Run with ``make screenshots``. Uses a throw-away data/config folder, so your own
conversations are neither read nor changed; the converted default model comes from
the usual cache. Greedy decoding keeps the answers stable from run to run.
"""

from __future__ import annotations

import asyncio
import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "screenshots"
SIZE = (120, 36)


def fix_wide_text(svg: Path) -> bool:
    """Rich's SVG export sizes each text run by its character count, not its cells
    (Textualize/rich#2742): a run of Japanese is squeezed into half its cells. Set
    ``textLength`` from the cell width instead. True when the file had wide text."""
    from rich.cells import cell_len

    wide = False

    def fix(m: re.Match[str]) -> str:
        nonlocal wide
        text = html.unescape(m.group(4)).rstrip("\n")  # a line's last run ends in "\n"
        if not text or cell_len(text) == len(text):
            return m.group(0)
        wide = True
        per_char = float(m.group(2)) / len(text)
        return f'<text{m.group(1)}textLength="{per_char * cell_len(text):g}"{m.group(3)}>' \
               f'{m.group(4)}</text>'

    source = svg.read_text(encoding="utf-8")
    fixed = re.sub(r'<text([^>]*?)textLength="([\d.]+)"([^>]*)>([^<]*)</text>', fix, source)
    if wide:
        svg.write_text(fixed, encoding="utf-8")
    return wide


def chromium_png(svg: Path, png: Path) -> bool:
    """Render with a browser: it honours textLength and falls back per glyph to a
    Japanese font (CairoSVG does neither, Kozea/CairoSVG#159)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    size = re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', svg.read_text(encoding="utf-8"))
    if browser is None or size is None:
        return False
    w, h = (int(float(v)) + 1 for v in size.groups())
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--window-size={w},{h}", f"--force-device-scale-factor={1600 / w:.3f}",
           f"--screenshot={png}", svg.resolve().as_uri()]
    done = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    return done.returncode == 0 and png.is_file()


def to_png(svg: Path) -> Path | None:
    png = svg.with_suffix(".png")
    fix_wide_text(svg)
    # A browser where there is one: CairoSVG ignores textLength, so a bold run drawn
    # wider than its cells covers the spaces after it ("Instructint8").
    if chromium_png(svg, png):
        return png
    try:
        import cairosvg
    except ImportError:
        print("cairosvg is not installed: only SVG written (pip install -e '.[dev]')")
        return None
    cairosvg.svg2png(url=str(svg), write_to=str(png), output_width=1600)
    return png


def throwaway_dir(prefix: str = "slmchat-shots-") -> Path:
    """A fresh data and config folder for one script: your own conversations and settings
    are neither read nor changed (the converted default model comes from the usual cache)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["SLMCHAT_DATA_DIR"] = str(tmp / "data")
    os.environ["SLMCHAT_CONFIG_DIR"] = str(tmp / "config")
    return tmp


def real_app(tmp: Path, *, max_new_tokens: int, language: str | None = None) -> Any:
    """The real app on the real default model over ``tmp``, greedy (stable answers from
    run to run), in ``language`` when given (as `slmchat chat` sets it)."""
    from slmchat.config import Settings
    from slmchat.engine.devices import configure_threads
    from slmchat.engine.session import Engine
    from slmchat.engine.store.store import Store
    from slmchat.i18n import resolve_language, set_language
    from slmchat.tui.app import SlmChatApp

    configure_threads()
    settings = Settings()
    settings.generation.temperature = 0.0
    settings.generation.max_new_tokens = max_new_tokens
    if language is not None:
        settings.ui.language = language  # type: ignore[assignment]
        set_language(resolve_language(language))
    OUT.mkdir(exist_ok=True)
    return SlmChatApp(settings, Engine(), Store(tmp / "data" / "conversations.db"),
                      persist_settings=False)


async def save_shot(app: Any, pilot: Any, name: str, settle: float = 0.3,
                    clear: bool = False) -> list[Path]:
    """screenshots/NAME.svg and .png of the app as it is, cursors steady (``clear``: the
    notifications gone too)."""
    if clear:
        app.clear_notifications()
    app.chat.prompt.cursor_blink = False
    for area in app.screen.query("Input, TextArea"):
        area.cursor_blink = False
    await pilot.pause(settle)
    svg = Path(app.save_screenshot(f"{name}.svg", str(OUT)))
    png = to_png(svg)
    print(f"wrote {svg.name}" + (f" and {png.name}" if png else ""))
    return [svg, png] if png else [svg]


async def wait_reply(app: object, pilot: object) -> None:
    chat = app.chat  # type: ignore[attr-defined]
    while chat.generating or chat.pending:
        await pilot.pause(0.2)  # type: ignore[attr-defined]
    await pilot.pause(0.5)  # type: ignore[attr-defined]


async def main() -> int:
    tmp = throwaway_dir()
    app = real_app(tmp, max_new_tokens=200)
    store = app.store
    written: list[Path] = []

    async def shot(name: str, settle: float = 0.3) -> None:
        written.extend(await save_shot(app, pilot, name, settle))

    async with app.run_test(size=SIZE) as pilot:
        # 1. Start-up: typing while the model loads (the first frame comes before it).
        await pilot.pause(0.05)
        app.chat.prompt.insert("What is the capital of France?")  # as if typed, at once
        await pilot.press("enter")
        await shot("01-loading", settle=0.05)
        await wait_reply(app, pilot)
        # 2. A new chat answered with a code block (and one mid-stream shot).
        await pilot.press("ctrl+n")
        await pilot.press(*"Write a Python function that checks whether a number is prime.",
                          "enter")
        while app.chat.generating and len(app.chat.log_view.views()[-1].content) < 120:
            await pilot.pause(0.2)
        await shot("02-streaming")
        await wait_reply(app, pilot)
        app.clear_notifications()
        await shot("03-answered-code")
        # 3. The sidebar with a full-text search.
        await pilot.press("ctrl+f", *"paris")
        await pilot.pause(0.5)
        await shot("04-sidebar-search")
        # 4. The per-conversation settings panel.
        await pilot.press("escape", "ctrl+s")
        await pilot.pause(0.5)
        await shot("05-settings")
        await pilot.press("ctrl+s")
        # 5. The command palette.
        await pilot.press("ctrl+p", *"conv")
        await pilot.pause(0.8)
        await shot("06-command-palette")
        await pilot.press("escape")
    store.close()
    print(f"{len(written)} files in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
