"""Screenshot 23: accepted draft tokens tinted in the chat (issue 27).

The real app on the real default model, on its default runtime (the onnx copy, which
verifies drafts exactly where this machine's row probe holds) with prompt-lookup
speculation and ``[ui] tint_accepted_drafts`` on, asked to repeat a pasted paragraph: the text lookup drafted
and the model kept has a tinted background. Greedy, so the picture is stable.
Writes screenshots/23-tinted-drafts.svg and .png only.
Usage: ``python scripts/screenshots_speculative.py``
"""

from __future__ import annotations

import asyncio
import html
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshots import OUT, SIZE, save_shot, throwaway_dir, wait_reply

PROMPT = ("Repeat this paragraph exactly: The river runs through the old town, past the mill "
          "and the stone bridge, and on to the sea. Fishermen mend their nets on the quay "
          "every morning.")


def cairo_png(svg: Path) -> Path:
    """The PNG without a browser: CairoSVG ignores ``textLength`` and the font fallback
    list, so a run that starts mid-word (the tint's edges do) overlaps its neighbour. Each
    glyph gets its cell's x and the font is a monospaced one that is installed."""
    import cairosvg

    def place(m: re.Match[str]) -> str:
        before, x, mid, length, after, body = m.groups()
        n = len(html.unescape(body).rstrip("\n")) or 1
        xs = " ".join(f"{float(x) + i * float(length) / n:g}" for i in range(n))
        return f'<text{before}x="{xs}"{mid}{after}>{body}</text>'

    source = svg.read_text(encoding="utf-8").replace("Fira Code, monospace", "DejaVu Sans Mono")
    placed = re.sub(r'<text([^>]*?)x="([\d.]+)"([^>]*?)textLength="([\d.]+)"([^>]*)>([^<]*)</text>',
                    place, source)
    png = svg.with_suffix(".png")
    cairosvg.svg2png(bytestring=placed.encode("utf-8"), write_to=str(png), output_width=1600)
    return png


async def main() -> int:
    tmp = throwaway_dir("slmchat-speculative-")

    from slmchat.config import Settings
    from slmchat.engine.devices import configure_threads
    from slmchat.engine.generation.speculative import parse
    from slmchat.engine.session import Engine
    from slmchat.engine.store.store import Store
    from slmchat.tui.app import SlmChatApp

    configure_threads()
    settings = Settings()
    settings.generation.temperature = 0.0
    settings.generation.max_new_tokens = 120
    settings.generation.speculative = "lookup"
    settings.ui.tint_accepted_drafts = True
    OUT.mkdir(exist_ok=True)
    app = SlmChatApp(settings, Engine(speculation=parse("lookup")),
                     Store(tmp / "data" / "conversations.db"), persist_settings=False)
    async with app.run_test(size=SIZE) as pilot:
        while not app.chat.model_ready:
            await pilot.pause(0.2)
        app.chat.prompt.set_text(PROMPT)
        await pilot.press("enter")
        await wait_reply(app, pilot)
        view = app.chat.log_view.views()[-1]
        if not view.tinted:
            print("the reply kept no draft: nothing to show")
            return 1
        files = await save_shot(app, pilot, "23-tinted-drafts", settle=0.5, clear=True)
        if not (shutil.which("chromium") or shutil.which("chromium-browser")):
            print(f"rewrote {cairo_png(files[0]).name} (monospaced, glyphs in their cells)")
        app.store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
