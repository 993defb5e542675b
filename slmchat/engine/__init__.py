"""The engine: everything that works without a screen. Never imports textual."""

from __future__ import annotations
