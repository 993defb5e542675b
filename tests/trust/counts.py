"""Counters shared by the trust tests (written out by tests/trust/conftest.py)."""

from __future__ import annotations

from collections import Counter

COUNTS: Counter[str] = Counter()
DETAILS: dict[str, object] = {}


def record(**counts: int) -> None:
    COUNTS.update(counts)


def detail(key: str, value: object) -> None:
    DETAILS[key] = value
