"""Screenshots 20-22: output programs can use.

20, 21: a thinking model's reply in the app, its reasoning folded into one line above the
answer, then unfolded (Alt+T). No thinking model ships with slmchat and nothing is downloaded,
so the reply is scripted (the tests' FakeEngine, which splits the reasoning with the
engine's own code, generation/reasoning.py); the app around it is the real one.
22: a constrained reply on the real default model: ``slmchat generate --json-schema``,
its output recorded as a terminal picture.
Usage: ``python scripts/screenshots_output.py``
"""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.tui.fakes
sys.path.insert(0, str(Path(__file__).resolve().parent))

from screenshots import OUT, SIZE, save_shot, throwaway_dir, to_png, wait_reply

THINKING_REPLY = (
    "<think>\nThe user wants to know why the sky is blue. The key idea is Rayleigh "
    "scattering: air molecules are much smaller than the wavelength of visible light, so "
    "they scatter short wavelengths far more strongly (about 1/λ⁴). Blue light (~450 nm) "
    "is scattered roughly 5 times more than red (~700 nm). Violet is scattered even more, "
    "but the sun emits less of it and our eyes are less sensitive to it. I should also "
    "mention sunsets: the light crosses more air, so the blue is scattered away and reds "
    "remain. Keep the answer short.\n</think>\n\n"
    "The sky looks blue because of **Rayleigh scattering**: the molecules in the air "
    "scatter short (blue) wavelengths of sunlight much more strongly than long (red) ones, "
    "so blue light reaches your eyes from every direction of the sky.\n\n"
    "At sunset the light travels through much more air; most of the blue is scattered away "
    "before it reaches you, which leaves the reds and oranges."
)

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "capital": {"type": "string"},
        "continent": {"enum": ["Africa", "Asia", "Europe", "North America", "Oceania",
                               "South America"]},
        "population_millions": {"type": "number", "minimum": 0},
    },
    "required": ["name", "capital", "continent", "population_millions"],
    "additionalProperties": False,
}


async def thinking_shots() -> list[Path]:
    from slmchat.config import Settings
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.offline import ensure_offline
    from slmchat.engine.store.store import Store
    from slmchat.tui.app import SlmChatApp
    from tests.tui.fakes import FakeEngine

    ensure_offline()  # as `slmchat` sets it: the status bar says so
    tmp = throwaway_dir()
    engine = FakeEngine(replies=[THINKING_REPLY], thinking_switch=True)
    app = SlmChatApp(Settings(), engine, Store(tmp / "data" / "conversations.db"),
                     spec=ModelSpec(path="/models/thinker-scripted"), persist_settings=False)
    written: list[Path] = []
    async with app.run_test(size=SIZE) as pilot:
        while app.chat.engine.info is None:
            await pilot.pause(0.1)
        await pilot.press(*"Why is the sky blue?", "enter")
        await wait_reply(app, pilot)
        written += await save_shot(app, pilot, "20-thinking-folded", clear=True)
        await pilot.press("alt+t")
        written += await save_shot(app, pilot, "21-thinking-unfolded", clear=True)
    app.store.close()
    return written


def constrained_shot() -> list[Path]:
    """``slmchat generate --json-schema`` on the default model, as a terminal shows it."""
    from rich.console import Console
    from rich.syntax import Syntax

    tmp = throwaway_dir()
    schema = tmp / "country.json"
    schema.write_text(json.dumps(SCHEMA, indent=2), encoding="utf-8")
    argv = ["slmchat", "generate", "Describe France.", "--json-schema", "country.json",
            "--temperature", "0"]
    done = subprocess.run([sys.executable, "-m", "slmchat", *argv[1:]], cwd=tmp, text=True,
                          capture_output=True, check=True, timeout=600)
    reply = done.stdout.strip()
    json.loads(reply)  # it parses: that is the point of the picture
    console = Console(record=True, width=96, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print("[bold green]$[/] cat country.json")
    console.print(Syntax(json.dumps(SCHEMA), "json", background_color="default", word_wrap=True))
    console.print(f"[bold green]$[/] {shlex.join(argv)}")
    console.print(Syntax(reply, "json", background_color="default", word_wrap=True))
    OUT.mkdir(exist_ok=True)
    svg = OUT / "22-constrained-reply.svg"
    svg.write_text(console.export_svg(title="slmchat generate --json-schema"), encoding="utf-8")
    png = to_png(svg)
    print(f"wrote {svg.name}" + (f" and {png.name}" if png else ""))
    return [svg, png] if png else [svg]


def main() -> int:
    written = asyncio.run(thinking_shots())
    written += constrained_shot()
    print(f"{len(written)} files in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
