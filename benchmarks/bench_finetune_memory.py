"""Peak memory of fine-tune data preparation (and a 2-step run) against the data size.

Makes synthetic English-like text files of N MB (seeded, nothing downloaded), then in a
fresh child process per case measures peak RSS (``os.wait4`` rusage, ``ru_maxrss``) of

* ``prepare``: ``plan.preview`` (tokenise + blocks + split), what ``slmchat finetune``
  does before anything starts;
* ``run``: preview, then a 2-step run (``--max-steps 2``) in the same process, as a
  foreground ``slmchat finetune`` does, on the tiny random Llama of the tests.

``--tree DIR`` measures another checkout (e.g. ``git worktree add /tmp/old-ft 541f28a``)
for a before/after table; every child runs under an address-space cap (``--cap-gb``) so
the old code cannot take the machine down. Usage::

    python benchmarks/bench_finetune_memory.py --sizes 5 50 500 [--tree /tmp/old-ft --label old]

prints a table and merges the rows into ``benchmarks/results/finetune_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "finetune_memory.json"
WORK = Path(os.environ.get("BENCH_FT_DIR", Path(tempfile.gettempdir()) / "ft-mem-bench"))

_WORDS = ("the a of to and in is was for on with as by at from that this river city "
         "model data train house light water stone paper music garden window morning "
         "quickly slowly quietly bright dark old new small large green blue red people "
         "story history science market evening winter summer language number question "
         "answer reason learn teach write read build open close walk run carry follow "
         "north south bridge mountain forest island harbour village kitchen letter "
         "friend teacher student doctor engine signal pattern measure careful simple")
WORDS = _WORDS.split()


def make_text(path: Path, megabytes: int, seed: int = 0) -> Path:
    """``megabytes`` MB of varied English-like lines (a pool of seeded sentences mixed
    with numbers, so the text does not repeat in a short cycle)."""
    if path.exists() and path.stat().st_size >= megabytes << 20:
        return path
    rng = random.Random(seed)
    pool = []
    for _ in range(20000):
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 18))]
        words[0] = words[0].capitalize()
        pool.append(" ".join(words) + rng.choice(".!?;."))
    path.parent.mkdir(parents=True, exist_ok=True)
    target = megabytes << 20
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        written, n = 0, 0
        while written < target:
            lines = []
            for _ in range(2000):
                n += 1
                k = rng.randint(1, 4)
                lines.append(f"{n}. " + " ".join(rng.choice(pool) for _ in range(k)))
            chunk = "\n".join(lines) + "\n\n"
            fh.write(chunk)
            written += len(chunk)
    tmp.replace(path)
    return path


def child(ns: argparse.Namespace) -> None:
    """Runs inside the measured process: import slmchat from --tree, do one case."""
    sys.path.insert(0, ns.tree)
    os.environ["SLMCHAT_DATA_DIR"] = ns.home
    os.environ.setdefault("SLMCHAT_CACHE_DIR", str(Path(ns.home) / "cache"))
    from slmchat.engine.finetune.args import TrainArgs
    from slmchat.engine.finetune.plan import preview

    t0 = time.perf_counter()
    args = TrainArgs(data=ns.data, model=ns.model, block_size=256, batch_size=2,
                     max_steps=2, device="cpu", bf16="off", max_eval_blocks=4)
    pv = preview(args)
    out: dict[str, Any] = {"tokens": pv.data["tokens"], "blocks": pv.data["blocks"],
                           "prepare_s": time.perf_counter() - t0}
    if ns.mode == "run":
        from slmchat.engine.finetune.job import run_job
        from slmchat.engine.finetune.plan import prepare_run

        t1 = time.perf_counter()
        status = run_job(prepare_run(args))
        out.update(state=status.get("state"), message=status.get("message"),
                   run_s=time.perf_counter() - t1)
    print("RESULT " + json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[5, 50, 500])
    ap.add_argument("--modes", nargs="+", default=["prepare", "run"])
    ap.add_argument("--tree", default=str(HERE.parent), help="the checkout to measure")
    ap.add_argument("--label", default="new")
    ap.add_argument("--cap-gb", type=float, default=12.0)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--model", default="")
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--data", default="")
    ap.add_argument("--mode", default="prepare")
    ap.add_argument("--home", default="")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns.child:
        child(ns)
        return
    WORK.mkdir(parents=True, exist_ok=True)
    model = Path(ns.model) if ns.model else WORK / "tiny-llama"
    if not (model / "config.json").is_file():
        sys.path.insert(0, str(HERE.parent))
        from tests.tinymodels import make_tiny_llama

        make_tiny_llama(model)
    if ns.one:  # one case in this (fresh) parent: RUSAGE_CHILDREN is that child's peak
        size, mode = ns.sizes[0], ns.modes[0]
        data = make_text(WORK / f"text-{size}MB.txt", size)
        row = measure_one(Path(ns.tree), data, model, mode, ns.cap_gb, ns.timeout)
        print("ROW " + json.dumps(row))
        return
    rows = []
    for size in ns.sizes:
        make_text(WORK / f"text-{size}MB.txt", size)
        for mode in ns.modes:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--one", "--sizes",
                   str(size), "--modes", mode, "--tree", ns.tree, "--cap-gb", str(ns.cap_gb),
                   "--timeout", str(ns.timeout), "--model", str(model)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
            got = [line for line in out.splitlines() if line.startswith("ROW ")]
            row = json.loads(got[-1][4:]) if got else {"mode": mode, "error": "no result"}
            row.update(label=ns.label, mb=size)
            rows.append(row)
            print(f"{ns.label:5} {size:5} MB {mode:8} peak RSS {row.get('peak_rss_mb', '?'):>7} MB"
                  f"  {row.get('wall_s', '?'):>7} s  tokens {row.get('tokens', '-')}"
                  f"  {row.get('error', row.get('state', ''))}", flush=True)
    old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"rows": []}
    keep = [r for r in old.get("rows", [])
            if (r.get("label"), r.get("mb"), r.get("mode")) not in
            {(r2["label"], r2["mb"], r2["mode"]) for r2 in rows}]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"what": "peak RSS of fine-tune data preparation and a "
                                   "2-step run (tiny Llama, block 256) by data size",
                                   "rows": keep + rows}, indent=1) + "\n")
    print(f"wrote {RESULTS}")


def measure_one(tree: Path, data: Path, model: Path, mode: str, cap_gb: float,
                timeout: float) -> dict[str, Any]:
    home = tempfile.mkdtemp(prefix="ft-mem-home-", dir=WORK)
    cap = int(cap_gb * 1e9)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        os.nice(10)

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(tree)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--tree", str(tree),
           "--data", str(data), "--model", str(model), "--mode", mode, "--home", home]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(tree),
                          preexec_fn=limit, timeout=timeout, check=False)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    shutil.rmtree(home, ignore_errors=True)  # its token cache can be a GB
    row: dict[str, Any] = {"mode": mode, "peak_rss_mb": round(peak_kb / 1024),
                           "wall_s": round(time.perf_counter() - t0, 1), "rc": proc.returncode}
    result = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if result:
        row.update(json.loads(result[-1][7:]))
    else:
        lines = proc.stderr.strip().splitlines() or ["?"]
        memory = [line for line in lines if "memory" in line.lower() or "alloc" in line.lower()]
        row["error"] = (memory or lines)[-1][:200]
        if memory:
            row["error"] = f"out of memory under the {cap_gb:g} GB address-space cap: " + row["error"]
    return row


if __name__ == "__main__":
    main()
