"""slmchat: a private, offline terminal workbench for small language models."""

from __future__ import annotations

__version__ = "0.1.0"
