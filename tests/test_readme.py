"""The README's settings.toml example shows the real defaults (it once said 0.7)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from slmchat.config import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_settings_example_matches_the_defaults() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Settings"):]
    example = tomllib.loads(re.search(r"```toml\n(.*?)```", section, re.DOTALL).group(1))
    defaults = Settings().model_dump()
    for table, values in example.items():
        for key, value in values.items():
            if (table, key) == ("model", "dirs"):
                continue  # an example of extra folders, empty by default
            assert defaults[table][key] == value, (table, key)
