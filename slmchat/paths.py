"""User folders from platformdirs, created lazily (never at import time).

Every folder can be moved with an environment variable so tests and CI stay inside a
temp dir: SLMCHAT_DATA_DIR, SLMCHAT_CACHE_DIR, SLMCHAT_CONFIG_DIR.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "slmchat"


def _dir(env: str, default: str) -> Path:
    value = os.environ.get(env)
    path = Path(value).expanduser() if value else Path(default)
    # Private by default: conversations, settings and runs are the user's own.
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def data_dir() -> Path:
    """Conversations database, fine-tune runs, quantized copies."""
    return _dir("SLMCHAT_DATA_DIR", platformdirs.user_data_dir(APP))


def cache_dir() -> Path:
    """The converted default model and other rebuildable artefacts."""
    return _dir("SLMCHAT_CACHE_DIR", platformdirs.user_cache_dir(APP))


def config_dir() -> Path:
    """settings.toml lives here."""
    return _dir("SLMCHAT_CONFIG_DIR", platformdirs.user_config_dir(APP))


def runs_dir() -> Path:
    path = data_dir() / "runs"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def models_dir() -> Path:
    """Where slmchat writes models it makes (quantized copies, exports, merges)."""
    path = data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
