"""The default fine-tune recipe, measured: held-out perplexity before/after 40 steps.

Three English prose texts that ship with Python or Debian (none written by us):

* ``gpl3``: the GNU GPL v3 licence text (/usr/share/common-licenses/GPL-3);
* ``python-ref``: the Python Language Reference, "compound statements"
  (``pydoc_data.topics``, shipped with CPython);
* ``idle-guide``: the IDLE user guide (``idlelib/help.html``, shipped with CPython; its
  text read by slmchat's own HTML reader).

Each text is cut at paragraph borders into ~30 KB of training text and the ~4 KB that
follows it, which no run ever sees: the *independent* held-out text, scored with a
sliding window before and after training. The job's own held-out split (5 % of the
training blocks, which early stopping looks at) is reported too, but the target
(-15 % perplexity) is checked on the independent text, which early stopping cannot
flatter. Each run is the real job (``prepare_run`` + ``run_job``), defaults unless
``--set key=value`` overrides them.

    python benchmarks/bench_recipe.py [--texts gpl3,python-ref] [--set lr=1e-3] [--label X]
    python benchmarks/bench_recipe.py --contention   # chat decode tok/s, idle vs training

Results are merged into ``benchmarks/results/recipe.json`` (keyed by label and text).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (see runs.spawn)

RESULTS = Path(__file__).parent / "results" / "recipe.json"
TRAIN_BYTES = 30_000
HELDOUT_BYTES = 4_000


def _gpl3() -> str:
    return Path("/usr/share/common-licenses/GPL-3").read_text(encoding="utf-8")


def _python_ref() -> str:
    from pydoc_data.topics import topics

    return str(topics["compound"])


def _idle_guide() -> str:
    import idlelib

    from slmchat.engine.retrieval.readers import html_blocks

    html = (Path(idlelib.__file__).parent / "help.html").read_text(encoding="utf-8")
    return "\n\n".join(b.text for b in html_blocks(html))


TEXTS = {
    "gpl3": ("GNU GPL v3 licence", _gpl3),
    "python-ref": ("Python reference: compound statements", _python_ref),
    "idle-guide": ("IDLE user guide (help.html)", _idle_guide),
}


def split_text(text: str) -> tuple[str, str]:
    """(~30 KB of training text, the ~4 KB after it), cut between paragraphs."""
    paras = [p.strip() for p in text.split("\n\n") if p.strip()]
    train: list[str] = []
    held: list[str] = []
    size = 0
    for p in paras:
        if size < TRAIN_BYTES:
            train.append(p)
        elif sum(len(h) for h in held) < HELDOUT_BYTES:
            held.append(p)
        size += len(p) + 2
    return "\n\n".join(train) + "\n", "\n\n".join(held) + "\n"


def heldout_ppl(model: Any, tok: Any, text: str) -> float:
    from slmchat.engine.tools.perplexity import perplexity

    return perplexity(model, tok, text, window=256, stride=128).perplexity


def run_text(name: str, model_dir: Path, overrides: dict[str, Any], work: Path,
             base_cache: dict[str, float]) -> dict[str, Any]:
    from slmchat.engine.finetune.args import TrainArgs
    from slmchat.engine.finetune.job import run_job
    from slmchat.engine.finetune.plan import prepare_run
    from slmchat.engine.model.loader import load
    from slmchat.engine.model.spec import ModelSpec

    title, reader = TEXTS[name]
    train, held = split_text(reader())
    data = work / f"{name}.txt"
    data.write_text(train, encoding="utf-8")
    if name not in base_cache:
        base = load(ModelSpec(path=str(model_dir), dtype="fp32", device="cpu"))
        base_cache[name] = heldout_ppl(base.model, base.tokenizer, held)
        del base
    args = TrainArgs(data=str(data), model=str(model_dir), max_steps=40, device="cpu",
                     out=str(work / f"{name}-out"))
    for key, value in overrides.items():
        setattr(args, key, value)
    run_dir = prepare_run(args, work / f"{name}-run")
    t0 = time.perf_counter()
    status = run_job(run_dir)
    wall = time.perf_counter() - t0
    if status.get("state") != "done":
        raise SystemExit(f"{name}: the run ended {status.get('state')}: {status.get('message')}")
    m = status["metrics"]
    tuned = load(ModelSpec(path=str(args.out), dtype="fp32", device="cpu"))
    after = heldout_ppl(tuned.model, tuned.tokenizer, held)
    before = base_cache[name]
    return {
        "text": name, "title": title, "train_bytes": len(train.encode()),
        "heldout_bytes": len(held.encode()), "steps_run": m.get("last_step"),
        "result_step": m.get("result_step"), "stopped_early_at": m.get("stopped_early_at"),
        "job_ppl_before": m.get("perplexity_before"), "job_ppl_after": m.get("perplexity_after"),
        "heldout_ppl_before": before, "heldout_ppl_after": after,
        "heldout_change_pct": 100 * (after - before) / before,
        "train_tok_s": m.get("train_tokens_per_s"), "wall_s": wall,
    }


def parse_value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def recipe(ns: argparse.Namespace) -> int:
    from slmchat.engine.devices import configure_threads
    from slmchat.engine.finetune.args import TrainArgs
    from slmchat.engine.model.default import ensure_default_model

    threads = configure_threads()
    model_dir = ensure_default_model()
    overrides = dict((kv.split("=", 1)[0], parse_value(kv.split("=", 1)[1])) for kv in ns.set)
    effective = {**TrainArgs(data="x").to_dict(), "max_steps": 40, **overrides}
    rows = []
    base_cache: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ns.texts.split(","):
            row = run_text(name, model_dir, overrides, Path(tmp), base_cache)
            rows.append(row)
            print(f"{ns.label:12s} {name:11s} held-out ppl {row['heldout_ppl_before']:7.2f} -> "
                  f"{row['heldout_ppl_after']:7.2f} ({row['heldout_change_pct']:+.1f} %); job "
                  f"split {row['job_ppl_before']:.2f} -> {row['job_ppl_after']:.2f}; steps "
                  f"{row['steps_run']} (result {row['result_step']}); {row['wall_s']:.0f} s",
                  flush=True)
    report = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": {}}
    report.setdefault("runs", {})[ns.label] = {
        "overrides": overrides,
        "recipe": {k: effective[k] for k in ("method", "lr", "lora_r", "lora_alpha",
                                             "block_size", "batch_size", "max_steps",
                                             "warmup_ratio", "early_stop_patience")},
        "rows": rows, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": _machine(threads),
    }
    _write(report)
    return 0


def _machine(threads: int) -> dict[str, Any]:
    import torch

    from slmchat.engine.devices import cpu_info

    return {"cpu": cpu_info()["model"], "threads": threads, "torch": torch.__version__,
            "load_avg_1m": os.getloadavg()[0]}


def _write(report: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {RESULTS}")


# --- chat decode speed while a fine-tune runs -----------------------------------------

def decode_tps(engine: Any, tokens: int = 48) -> float:
    from slmchat.engine.generation.prompting import ChatMessage
    from slmchat.engine.generation.sampling import SamplingParams

    params = SamplingParams(temperature=0.0, max_new_tokens=tokens)
    chunks = list(engine.stream_chat([ChatMessage("user", "Tell me about foxes.")], params))
    return float(chunks[-1].decode_tps) if chunks else 0.0


def contention(ns: argparse.Namespace) -> int:
    """Decode tok/s of the default model idle, then beside a background fine-tune started
    the way the panel starts it (``rundir.spawn``), with the chat's thread policy
    (half the cores while training) and, for comparison, with all cores."""
    import torch

    from slmchat.engine.devices import physical_cores
    from slmchat.engine.finetune import rundir as runs
    from slmchat.engine.finetune.args import TrainArgs
    from slmchat.engine.finetune.plan import prepare_run
    from slmchat.engine.model.default import ensure_default_model
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.session import Engine, TrainingWatch

    model_dir = ensure_default_model()
    spec = ModelSpec(path=str(model_dir), dtype="fp32", device="cpu")
    idle_engine = Engine(training=TrainingWatch(count=lambda: 0))
    idle_engine.load(spec)
    busy_engine = Engine(loaded=idle_engine.loaded, training=TrainingWatch(count=lambda: 1))
    decode_tps(idle_engine, 8)  # warm-up
    idle = [decode_tps(idle_engine) for _ in range(ns.repeats)]
    idle_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "gpl3.txt"
        data.write_text(split_text(_gpl3())[0], encoding="utf-8")
        run_dir = prepare_run(TrainArgs(data=str(data), model=str(model_dir), max_steps=400,
                                        device="cpu", out=str(Path(tmp) / "out")),
                              Path(tmp) / "run")
        proc = runs.spawn(run_dir)
        try:
            deadline = time.time() + 600
            while time.time() < deadline and int(runs.read_status(run_dir).get("step") or 0) < 1:
                time.sleep(2)
            job_threads = runs.read_status(run_dir).get("threads")
            policy = [decode_tps(busy_engine) for _ in range(ns.repeats)]
            policy_threads = torch.get_num_threads()
            all_cores = [decode_tps(idle_engine) for _ in range(ns.repeats)]
            steps = int(runs.read_status(run_dir).get("step") or 0)
        finally:
            runs.request_cancel(run_dir)
            try:
                proc.wait(timeout=120)
            except Exception:
                proc.kill()
    report = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": {}}
    report["contention"] = {
        "cores": physical_cores(), "job_threads": job_threads, "job_steps_meanwhile": steps,
        "idle": {"threads": idle_threads, "decode_tok_s": idle},
        "training_chat_policy": {"threads": policy_threads, "decode_tok_s": policy},
        "training_all_cores": {"threads": idle_threads, "decode_tok_s": all_cores},
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": _machine(idle_threads),
    }
    med = sorted
    print(f"cores {physical_cores()}, job threads {job_threads}")
    print(f"{'chat decode':34s} {'threads':>7s} {'tok/s (median)':>15s}")
    for label, threads, values in (("idle", idle_threads, idle),
                                   ("fine-tune running, chat policy", policy_threads, policy),
                                   ("fine-tune running, all cores", idle_threads, all_cores)):
        print(f"{label:34s} {threads:7d} {med(values)[len(values) // 2]:15.1f}")
    _write(report)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", default=",".join(TEXTS))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a TrainArgs field (e.g. lr=1e-3)")
    parser.add_argument("--label", default="default")
    parser.add_argument("--contention", action="store_true",
                        help="measure chat decode speed idle vs beside a fine-tune")
    parser.add_argument("--repeats", type=int, default=3)
    ns = parser.parse_args()
    from slmchat.engine.offline import ensure_offline

    ensure_offline()
    return contention(ns) if ns.contention else recipe(ns)


if __name__ == "__main__":
    sys.exit(main())
