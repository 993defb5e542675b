"""Preference tuning from marks, measured on the default model.

The scenario: a user asks questions, the model answers at length, and the user edits each
reply into the short direct answer they wanted. Those edits go through the real path:
stored conversations -> ``set_preferred`` (an edit) -> ``export_pairs`` (DPO pairs:
edited reply preferred to the model's own) -> ``finetune --method dpo`` (``prepare_run``
+ ``run_job``, the defaults unless ``--set`` says otherwise). The job holds out a quarter
of the prompts; the figure is the **held-out preference share**: the share of held-out
pairs where the model gives the preferred (edited) reply the higher log-probability,
before and after. The share on the training pairs is shown too.

    python benchmarks/bench_dpo.py [--steps 40] [--set lr=1e-4] [--label X]

Writes ``benchmarks/results/dpo.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (see runs.spawn)

RESULTS = Path(__file__).parent / "results" / "dpo.json"
# (question, the short answer the user edited the reply into)
QA = [
    ("What is the capital of Australia?", "Canberra."),
    ("What is the capital of Canada?", "Ottawa."),
    ("What is the capital of Japan?", "Tokyo."),
    ("What is the capital of Kenya?", "Nairobi."),
    ("What is the capital of Brazil?", "Brasília."),
    ("What is the capital of Egypt?", "Cairo."),
    ("How many legs does a spider have?", "Eight."),
    ("How many days are in a leap year?", "366."),
    ("How many continents are there?", "Seven."),
    ("How many sides does a hexagon have?", "Six."),
    ("What is 12 times 12?", "144."),
    ("What is the square root of 81?", "9."),
    ("What is 15 plus 27?", "42."),
    ("What gas do plants absorb from the air?", "Carbon dioxide."),
    ("What is the boiling point of water at sea level in Celsius?", "100 °C."),
    ("What is the chemical symbol for gold?", "Au."),
    ("What is the largest planet in the solar system?", "Jupiter."),
    ("Which planet is closest to the sun?", "Mercury."),
    ("What is the freezing point of water in Fahrenheit?", "32 °F."),
    ("Who wrote Romeo and Juliet?", "William Shakespeare."),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci."),
    ("Who developed the theory of relativity?", "Albert Einstein."),
    ("In which year did the first person walk on the moon?", "1969."),
    ("What is the longest river in Africa?", "The Nile."),
    ("What is the tallest mountain on Earth?", "Mount Everest."),
    ("What is the largest ocean?", "The Pacific."),
    ("What language is spoken in Brazil?", "Portuguese."),
    ("What is the currency of Japan?", "The yen."),
    ("How many minutes are in an hour?", "Sixty."),
    ("What is the opposite of hot?", "Cold."),
    ("What color do you get by mixing blue and yellow?", "Green."),
    ("What is the main ingredient of guacamole?", "Avocado."),
    ("Which animal is known as the king of the jungle?", "The lion."),
    ("What is the hardest natural substance?", "Diamond."),
    ("How many bones are in the adult human body?", "206."),
    ("What organ pumps blood through the body?", "The heart."),
    ("What is the smallest prime number?", "2."),
    ("What do bees make?", "Honey."),
    ("What is H2O commonly called?", "Water."),
    ("Which keyword defines a function in Python?", "`def`."),
    ("What does CPU stand for?", "Central processing unit."),
    ("What is the plural of mouse?", "Mice."),
    ("How many hours are in a day?", "24."),
    ("What is the first letter of the Greek alphabet?", "Alpha."),
    ("Which metal is liquid at room temperature?", "Mercury."),
    ("What is the capital of Italy?", "Rome."),
    ("What is 100 divided by 4?", "25."),
    ("What is the largest mammal?", "The blue whale."),
]


def build_store(db: Path, model_dir: Path, max_new: int) -> tuple[Path, float]:
    """Conversations with the model's greedy replies, each edited into the short answer."""
    from slmchat.engine.generation.prompting import ChatMessage
    from slmchat.engine.generation.sampling import SamplingParams
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.session import Engine
    from slmchat.engine.store import curation
    from slmchat.engine.store.store import Store

    engine = Engine()
    engine.load(ModelSpec(path=str(model_dir), dtype="fp32", device="cpu"))
    store = Store(db)
    t0 = time.perf_counter()
    params = SamplingParams(temperature=0, max_new_tokens=max_new)
    for question, answer in QA:
        conv = store.create_conversation(question[:40])
        store.add_message(conv.id, "user", question)
        reply = "".join(c.text for c in engine.stream_chat([ChatMessage("user", question)],
                                                           params)).strip()
        msg = store.add_message(conv.id, "assistant", reply)
        curation.set_preferred(store, msg.id, answer)
    out = db.parent / "pairs.jsonl"
    report = curation.export_pairs(store, out)
    store.close()
    print(f"{report.pairs} pairs from {report.from_edits} edits "
          f"({time.perf_counter() - t0:.0f} s of greedy replies)", file=sys.stderr)
    return out, time.perf_counter() - t0


def train_share(run_dir: Path, out: Path, args: Any) -> tuple[float, float]:
    """Preference share on the training pairs: base (adapter off) and the result."""
    from slmchat.engine.finetune.dpo import evaluate_pairs, prepare_pairs, reference_logps
    from slmchat.engine.model.loader import load
    from slmchat.engine.model.spec import ModelSpec

    tuned = load(ModelSpec(path=str(out), device="cpu"))
    prepared = prepare_pairs(args.data, tuned.tokenizer, args.block_size, args.eval_fraction,
                             args.seed)
    ref = reference_logps(tuned.model, prepared, args, "cpu", run_dir)
    after = evaluate_pairs(tuned.model, prepared.train, ref["train"], args, "cpu")
    with tuned.model.disable_adapter():
        before = evaluate_pairs(tuned.model, prepared.train, ref["train"], args, "cpu")
    return before["pref_share"], after["pref_share"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--max-new", type=int, default=48, help="tokens of each model reply")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--label", default="default")
    ap.add_argument("--work", type=Path, default=None,
                    help="keep the store, pairs and run folder here (default: a temp folder); "
                         "pairs.jsonl found there is reused")
    ns = ap.parse_args()
    from slmchat.engine.finetune.args import TrainArgs
    from slmchat.engine.finetune.job import run_job
    from slmchat.engine.finetune.plan import prepare_run
    from slmchat.engine.model.default import ensure_default_model

    model_dir = ensure_default_model()
    with tempfile.TemporaryDirectory(prefix="slmchat-bench-dpo-") as scratch:
        tmp = str(ns.work or scratch)
        Path(tmp).mkdir(parents=True, exist_ok=True)
        os.environ["SLMCHAT_DATA_DIR"] = str(Path(tmp) / "data")
        data, gen_s = Path(tmp) / "pairs.jsonl", 0.0
        if not data.is_file():
            data, gen_s = build_store(Path(tmp) / "conversations.db", model_dir, ns.max_new)
        gc.collect()  # the chat engine's model goes before the job loads its own
        overrides: dict[str, Any] = {}
        for item in ns.set:
            key, _, value = item.partition("=")
            overrides[key] = json.loads(value) if value[:1].isdigit() or value in (
                "true", "false") else value
        args = TrainArgs(data=str(data), model=str(model_dir), method="dpo",
                         max_steps=ns.steps, eval_fraction=0.25, device="cpu", **overrides)
        t0 = time.perf_counter()
        run_dir = Path(tmp) / "run"
        # an existing run folder (a stopped benchmark) is resumed, not started again
        status = run_job(run_dir if (run_dir / "args.json").is_file()
                         else prepare_run(args, run_dir))
        train_s = time.perf_counter() - t0
        if status["state"] != "done":
            print(f"run {status['state']}: {status['message']}", file=sys.stderr)
            return 1
        m = status["metrics"]
        train_before, train_after = train_share(Path(tmp) / "run", Path(status["out"]), args)
        data_info = status.get("data") or {}
    row = {
        "label": ns.label, "steps": ns.steps, "lr": args.learning_rate(), "beta": args.dpo_beta,
        "pairs_train": data_info.get("train_blocks"), "pairs_held_out": data_info.get("eval_blocks"),
        "held_out_share_before": m["pref_share_before"], "held_out_share_after": m["pref_share_after"],
        "held_out_dpo_loss_before": m["eval_loss_before"], "held_out_dpo_loss_after": m["eval_loss_after"],
        "train_share_before": train_before, "train_share_after": train_after,
        "result_step": m.get("result_step"), "stopped_early_at": m.get("stopped_early_at"),
        "train_s": round(train_s, 1), "generate_s": round(gen_s, 1),
    }
    print("| pairs (train / held out) | held-out share before -> after | held-out DPO loss "
          "| train share before -> after | steps (kept) | train time |")
    print("|---|---|---|---|---|---|")
    print(f"| {row['pairs_train']} / {row['pairs_held_out']} | "
          f"{row['held_out_share_before']:.0%} -> {row['held_out_share_after']:.0%} | "
          f"{row['held_out_dpo_loss_before']:.3f} -> {row['held_out_dpo_loss_after']:.3f} | "
          f"{train_before:.0%} -> {train_after:.0%} | {ns.steps} ({row['result_step']}) | "
          f"{train_s:.0f} s |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results[ns.label] = row
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
