"""Run the trust suite (tests/trust) and print its figures from benchmarks/results/trust.json.

    .venv/bin/python benchmarks/trust_report.py [extra pytest args]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "trust.json"


def main(argv: list[str]) -> int:
    env = {**os.environ, "SLMCHAT_TRUST_REPORT": str(RESULTS)}
    rc = subprocess.call([sys.executable, "-m", "pytest", "-q", "tests/trust", *argv], cwd=ROOT,
                         env=env)
    if not RESULTS.exists():
        print("no results written", file=sys.stderr)
        return rc or 1
    data = json.loads(RESULTS.read_text())
    rows = [("kills tried", data["kills_tried"]), ("states checked", data["states_checked"]),
            ("bytes lost", data["data_lost_bytes"]), ("rows/files lost", data["data_lost_rows"]),
            ("bad inputs tried", data["inputs_tried"]), ("tracebacks", data["tracebacks"]),
            ("existing files changed", data["files_changed"]),
            ("hypothesis examples", data["hypothesis_examples"]),
            ("connections attempted", data["connections_attempted"])]
    rows += [(k.replace("_", " "), v) for k, v in data.get("details", {}).items()]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print(f"(pytest exit {rc}, {data['wall_s']} s, {RESULTS.relative_to(ROOT)})")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
