"""The engine works without a screen: importing all of it loads no Textual and no app code
(Harlequin's check, beside the import-linter contracts in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import importlib, pkgutil, sys
import slmchat.engine as engine
for m in pkgutil.walk_packages(engine.__path__, "slmchat.engine."):
    if not m.name.endswith("__main__"):
        importlib.import_module(m.name)
bad = sorted(m for m in sys.modules
             if m == "textual" or m.startswith(("textual.", "slmchat.tui", "slmchat.commands")))
print("LEAKED", bad) if bad else print("CLEAN")
"""


def test_importing_every_engine_module_loads_no_ui() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "CLEAN", out.stdout
