"""Counters for the trust suite, written to benchmarks/results/trust.json at the end.

Each crash test records kills tried, states checked and bytes/rows lost; the bad-input
sweep records inputs tried. The JSON is the note's source of figures (issue 7).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import pytest

from tests.trust.counts import COUNTS, DETAILS

ROOT = Path(__file__).resolve().parents[2]
# Written where SLMCHAT_TRUST_REPORT points (benchmarks/trust_report.py sets it), so a
# plain test run never dirties the checkout.
RESULTS = Path(os.environ.get("SLMCHAT_TRUST_REPORT", "")) if os.environ.get(
    "SLMCHAT_TRUST_REPORT") else None

_START = time.time()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not COUNTS or RESULTS is None:
        return  # no trust test ran, or no report was asked for
    from tests.conftest import _attempts

    data = {
        "kills_tried": COUNTS["kills"],
        "states_checked": COUNTS["states"],
        "data_lost_bytes": COUNTS["lost_bytes"],
        "data_lost_rows": COUNTS["lost_rows"],
        "inputs_tried": COUNTS["inputs"],
        "tracebacks": COUNTS["tracebacks"],
        "files_changed": COUNTS["files_changed"],
        "hypothesis_examples": COUNTS["examples"],
        "connections_attempted": len(_attempts()),
        "counts": dict(COUNTS),
        "details": DETAILS,
        "exit_status": int(exitstatus),
        "wall_s": round(time.time() - _START, 1),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, python {platform.python_version()}",
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
