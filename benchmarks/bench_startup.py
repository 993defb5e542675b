"""Start-up benchmark: seconds from launching ``slmchat`` to its first frame.

Runs the chat app in a pseudo-terminal (100x30) on a throw-away data folder with the model
load left out (a scripted engine that never finishes loading, so only the start-up is
timed) and measures when "Conversations" (the sidebar's title) is first drawn. The same
is measured with torch imported before the app starts, which is what ``slmchat chat``
did before the first frame was moved ahead of every heavy import.
Usage: ``python benchmarks/bench_startup.py [--runs 5]``; prints a table and writes
``benchmarks/results/startup.json``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "startup.json"

SCRIPT = """
import sys, threading, slmchat.engine.session
{before}
from tests.tui.fakes import FakeEngine
slmchat.engine.session.Engine = lambda: FakeEngine(load_gate=threading.Event())
from slmchat.cli import main
raise SystemExit(main(["chat"]))
"""
VARIANTS = {
    "slmchat chat (now)": "",
    "torch imported first (before)": "import torch",
}


def first_frame_s(before: str, timeout: float = 60.0) -> float:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "TERM": "xterm-256color", "PYTHONPATH": str(ROOT),
               "SLMCHAT_DATA_DIR": f"{tmp}/data", "SLMCHAT_CONFIG_DIR": f"{tmp}/config"}
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", SCRIPT.format(before=before)],
                                stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT,
                                start_new_session=True)
        seen = b""
        try:
            while time.perf_counter() - t0 < timeout:
                if select.select([master], [], [], 0.01)[0]:
                    seen += os.read(master, 65536)
                    if b"Conversations" in seen:
                        return time.perf_counter() - t0
            raise TimeoutError("no first frame")
        finally:
            proc.kill()
            proc.wait()
            os.close(slave)
            os.close(master)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results = {}
    for name, before in VARIANTS.items():
        first_frame_s(before)  # warm the file cache
        times = [first_frame_s(before) for _ in range(args.runs)]
        results[name] = {"median_s": round(statistics.median(times), 3),
                         "min_s": round(min(times), 3), "runs": [round(t, 3) for t in times]}
    print(f"| start-up to first frame | median s | min s |  ({args.runs} runs, 100x30 pty)")
    print("|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['median_s']:.2f} | {r['min_s']:.2f} |")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({
        "machine": platform.processor() or platform.machine(), "python": platform.python_version(),
        "load_average": os.getloadavg(), "results": results}, indent=2) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
