"""What tool calls from the chat cost besides the model: starting an MCP server and
listing its tools (the first reply that offers tools waits for it), one call's round
trip on a warm connection, and compiling the call-or-text constraint for its tools.

The server is the tests' tiny stdio server (tests/mcpkit.py: 5 tools, the official SDK's
MCPServer), run with this interpreter. Each figure is the median of ``--rounds`` runs
(a fresh hub each round for the start; one hub for the calls).

    python benchmarks/bench_mcp.py [--rounds 5] [--calls 50]

Prints a table and writes ``benchmarks/results/mcp.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slmchat.engine.mcp.client import McpHub, McpTool  # noqa: E402
from tests.mcpkit import tiny_spec  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "mcp.json"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-mcp-"))
    spec = tiny_spec(folder)

    starts, closes, compiles = [], [], []
    for _ in range(args.rounds):
        hub = McpHub([spec])
        t0 = time.perf_counter()
        listing = hub.list_tools()
        starts.append(time.perf_counter() - t0)
        plan = listing.plan()
        assert plan is not None and not listing.problems
        t0 = time.perf_counter()
        plan.constraint()
        compiles.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        hub.close()
        closes.append(time.perf_counter() - t0)

    hub = McpHub([spec])
    hub.list_tools()
    add = McpTool(spec.name, "add")
    calls = []
    for i in range(args.calls):
        t0 = time.perf_counter()
        result = hub.call(add, {"a": i, "b": 1})
        calls.append(time.perf_counter() - t0)
        assert result.text == str(i + 1)
    hub.close()

    rows = [
        ("start a server + list its 5 tools (cold)", statistics.median(starts)),
        ("one tool call, warm connection", statistics.median(calls)),
        ("compile the call-or-text constraint (5 tools)", statistics.median(compiles)),
        ("stop the server (close)", statistics.median(closes)),
    ]
    print(f"CPU: {_cpu()}  python {platform.python_version()}")
    print(f"{'step':<50} {'median':>10}")
    for name, seconds in rows:
        print(f"{name:<50} {seconds * 1000:>8.1f} ms")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "cpu": _cpu(), "rounds": args.rounds, "calls": args.calls,
        "median_s": {name: round(s, 5) for name, s in rows},
        "all_s": {"start": starts, "call": calls, "compile": compiles, "close": closes},
    }, indent=2))
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
