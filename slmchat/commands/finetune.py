"""``slmchat finetune FILE``: fine-tune on a local text file, in the foreground.

The run lives in a run folder (see ``slmchat/engine/finetune/rundir.py``), so Ctrl-C (which saves a
checkpoint), a kill or a crash can be continued with ``--resume RUN_DIR``. ``--background``
starts the same job as a detached process (what the app's panel does).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from slmchat.errors import InvalidParameterError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune", help="fine-tune a model on a local text file (LoRA by default)",
        description="Fine-tune on a .txt/.md file, a folder of them, or a .jsonl of "
                    "{'text'} or {'messages'} rows; with --method dpo, on preference pairs "
                    "({'prompt', 'chosen', 'rejected'} rows: slmchat export-chats --pairs). "
                    "The result loads with --model OUT.")
    p.add_argument("file", nargs="?", help="training text (.txt, .md, folder, .jsonl)")
    p.add_argument("--model", "-m", default="default",
                   help="base model: 'default', a checkpoint folder or a .gguf file")
    p.add_argument("--method", choices=("lora", "full", "qlora", "dpo"), default="lora",
                   help="dpo: preference-tune a LoRA adapter on chosen/rejected reply pairs")
    steps = p.add_mutually_exclusive_group()
    steps.add_argument("--max-steps", type=int, default=None, help="optimizer steps")
    steps.add_argument("--epochs", type=float, default=None, help="passes over the data")
    p.add_argument("--out", default=None, help="result folder (default RUN_DIR/model)")
    g = p.add_argument_group("training")
    g.add_argument("--lr", type=float, default=None,
                   help="peak LR (lora 5e-4, full 5e-5, dpo 1e-4)")
    g.add_argument("--dpo-beta", type=float, default=0.1,
                   help="DPO: how far from the base model the preferences may pull (0.1)")
    g.add_argument("--warmup-ratio", type=float, default=0.05)
    g.add_argument("--block-size", type=int, default=None,
                   help="tokens per training block (default: 256, smaller for a short text "
                        "so that the held-out end is at least 8 blocks)")
    g.add_argument("--batch-size", type=int, default=4)
    g.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps")
    g.add_argument("--lora-r", type=int, default=8)
    g.add_argument("--lora-alpha", type=int, default=16)
    g.add_argument("--lora-dropout", type=float, default=0.05)
    g.add_argument("--lora-targets", default="all-linear",
                   help="'all-linear' or comma-separated module names (q_proj,v_proj)")
    g.add_argument("--eval-fraction", type=float, default=0.1,
                   help="share held out: the end of each file, at least 8 blocks where the "
                        "text allows (never trained on; early stopping watches it)")
    g.add_argument("--eval-every", type=int, default=None)
    g.add_argument("--save-every", type=int, default=None, help="checkpoint interval (steps)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--mask-prompt", action=argparse.BooleanOptionalAction, default=True,
                   help="chat rows: compute the loss on the assistant's tokens only "
                        "(default on; plain text always trains on every token)")
    g.add_argument("--early-stop-patience", type=int, default=3, metavar="N",
                   help="stop after N evaluations without a lower held-out loss and keep "
                        "the best step as the result (0: off, keep the last step)")
    g.add_argument("--bf16", choices=("auto", "on", "off"), default="auto",
                   help="bf16 autocast (auto: on GPUs with bf16 and AVX512-BF16/AMX CPUs)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    r = p.add_argument_group("run control")
    r.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue a stopped run from its last checkpoint")
    r.add_argument("--preview", action="store_true",
                   help="show data numbers and an estimated duration, then exit")
    r.add_argument("--no-probe", action="store_true", help="preview without the timing probe")
    r.add_argument("--background", action="store_true",
                   help="start as a detached process and return (watch it in the app)")
    r.add_argument("--run-dir", default=None, help="use this run folder (default: a new one)")
    r.add_argument("--prepare-only", action="store_true",
                   help="write the run folder and exit (e.g. for accelerate launch)")
    r.add_argument("--list", action="store_true", help="list runs and exit")
    p.set_defaults(func=run)


def args_from_cli(ns: argparse.Namespace) -> Any:
    from slmchat.engine.finetune.args import TrainArgs

    if not ns.file:
        raise InvalidParameterError("give the training FILE (or --resume RUN_DIR / --list)")
    epochs = ns.epochs if ns.epochs is not None else 1.0
    return TrainArgs(
        data=ns.file, model=ns.model, method=ns.method, out=ns.out, max_steps=ns.max_steps,
        epochs=epochs, lr=ns.lr, warmup_ratio=ns.warmup_ratio, block_size=ns.block_size,
        batch_size=ns.batch_size, grad_accum=ns.grad_accum, lora_r=ns.lora_r,
        lora_alpha=ns.lora_alpha, lora_dropout=ns.lora_dropout, lora_targets=ns.lora_targets,
        eval_fraction=ns.eval_fraction, eval_every=ns.eval_every, save_every=ns.save_every,
        seed=ns.seed, bf16=ns.bf16, device=ns.device, mask_prompt=ns.mask_prompt,
        early_stop_patience=ns.early_stop_patience, dpo_beta=ns.dpo_beta,
    ).validate()


class ReadingProgress:
    """'tokenising the data: 120 / 500 MB (24%)' on stderr while a large data set is read
    (in place on a terminal, every 10% otherwise); quiet below ``QUIET_BYTES``."""

    QUIET_BYTES = 32 << 20

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last_decile = -1

    def __call__(self, done: int, total: int) -> None:
        from slmchat.engine.finetune.plan import reading_line

        if total < self.QUIET_BYTES:
            return
        decile = 10 * done // max(total, 1)
        if not self.tty and decile == self.last_decile:
            return
        self.last_decile = decile
        end = "\n" if not self.tty or done >= total else ""
        start = "\r" if self.tty else ""
        print(f"{start}tokenising the data: {reading_line(done, total)}", end=end,
              file=self.stream, flush=True)


class ProgressBar:
    """A one-line bar on stderr (redrawn in place on a terminal, every 10% otherwise)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last_decile = -1
        self.last_eval: float | None = None

    def __call__(self, row: dict[str, Any]) -> None:
        from slmchat.fmt import format_duration

        if row.get("event") == "status":
            if row.get("state") == "running" and (row.get("message") in (
                    "loading data", "loading model")
                    or str(row.get("message", "")).startswith("tokenising")):
                self._line(f"{row['message']}...")
            return
        if row.get("event") != "progress":
            return
        step, total = int(row.get("step") or 0), int(row.get("total_steps") or 1)
        if row.get("eval_loss") is not None:
            self.last_eval = float(row["eval_loss"])
        width = 24
        filled = int(width * step / max(total, 1))
        loss = row.get("loss")
        text = (f"[{'#' * filled}{'.' * (width - filled)}] {step}/{total} "
                f"loss {loss:.3f}" if loss is not None else
                f"[{'.' * width}] {step}/{total} held-out loss {self.last_eval or 0:.3f}")
        if self.last_eval is not None and loss is not None:
            text += f" eval {self.last_eval:.3f}"
        if row.get("tokens_per_s"):
            text += f" {row['tokens_per_s']:.0f} tok/s"
        if row.get("eta_s") is not None:
            text += f" ETA {format_duration(row['eta_s'])}"
        decile = 10 * step // max(total, 1)
        if self.tty:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
        elif decile != self.last_decile or step == total:
            self.last_decile = decile
            self._line(text)

    def _line(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text + "\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _list_runs() -> int:
    from slmchat.engine.finetune.rundir import list_runs

    for r in list_runs():
        print(f"{r.state:9s} {r.step:>6}/{r.total_steps:<6} {r.method:5s} {r.path}  "
              f"{r.message}")
    return 0


def _report_result(status: dict[str, Any], run_dir: Path) -> int:
    state = status.get("state")
    m = status.get("metrics") or {}
    if state == "done":
        before, after = m.get("perplexity_before"), m.get("perplexity_after")
        data = status.get("data") or {}
        if m.get("pref_share_before") is not None and m.get("pref_share_after") is not None:
            print(f"held-out preference share {m['pref_share_before']:.0%} -> "
                  f"{m['pref_share_after']:.0%} (pairs where the preferred reply is the more "
                  f"likely one; DPO loss {m['eval_loss_before']:.4f} -> "
                  f"{m['eval_loss_after']:.4f})")
        if before is not None and after is not None:
            from slmchat.engine.finetune.plan import held_out_line
            from slmchat.engine.finetune.rundir import ARGS, read_json

            scored = read_json(run_dir / ARGS).get("max_eval_blocks")
            print(f"held-out perplexity {before:.2f} -> {after:.2f} "
                  f"(loss {m['eval_loss_before']:.4f} -> {m['eval_loss_after']:.4f}) on "
                  f"{held_out_line(data, scored)}")
        if data.get("eval_warning"):
            print(f"slmchat: warning: {data['eval_warning']}", file=sys.stderr)
        if m.get("stopped_early_at"):
            print(f"stopped early at step {m['stopped_early_at']} (held-out loss stopped "
                  f"improving); the result is step {m.get('result_step')}")
        from slmchat.engine.finetune.rundir import overfitting_warning, read_progress

        evals = [(int(r.get("step") or 0), float(r["eval_loss"]))
                 for r in read_progress(run_dir) if r.get("eval_loss") is not None]
        if (warning := overfitting_warning(evals)) is not None:
            print(f"slmchat: warning: {warning}", file=sys.stderr)
        print(f"saved: {status.get('out')}")
        print(f"chat with it: slmchat --model {status.get('out')}")
        return 0
    if state == "cancelled":
        print(f"slmchat: {status.get('message')}", file=sys.stderr)
        return 130
    print(f"slmchat: error: fine-tune failed: {status.get('message')} (log: "
          f"{run_dir / 'train.log'})", file=sys.stderr)
    return 1


def run(ns: argparse.Namespace) -> int:
    import os

    # Before torch loads: spinning OpenMP threads are ~10x slower on shared cores.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from slmchat.engine.finetune import rundir as runs
    from slmchat.engine.offline import ensure_offline

    ensure_offline()
    if ns.list:
        return _list_runs()
    if ns.resume:
        run_dir = Path(ns.resume).expanduser().resolve()
        summary = runs.summarize(run_dir)
        if not (run_dir / runs.ARGS).is_file():
            raise InvalidParameterError(f"not a run folder (no args.json): {run_dir}")
        if summary.state == "running":
            raise InvalidParameterError(
                f"run {run_dir} is still running (pid {summary.pid}); cancel it first")
        if summary.state == "done":
            print(f"run already finished: {summary.out}")
            return 0
    else:
        from slmchat.engine.finetune.plan import prepare_run, preview

        args = args_from_cli(ns)
        # Data problems surface here, before any model weights are loaded.
        pv = preview(args, probe_steps=0 if (ns.no_probe or not ns.preview) else 3,
                     progress=ReadingProgress())
        for line in pv.lines():
            print(line, file=sys.stderr)
        if ns.preview:
            return 0
        run_dir = prepare_run(args, Path(ns.run_dir).resolve() if ns.run_dir else None)
        print(f"run folder: {run_dir}", file=sys.stderr)
        if ns.prepare_only:
            print(run_dir)
            return 0
    if ns.background:
        proc = runs.spawn(run_dir)
        print(f"started in the background (pid {proc.pid}): {run_dir}")
        return 0
    from slmchat.engine.finetune.job import run_job

    bar = ProgressBar()
    t0 = time.perf_counter()
    with open(run_dir / runs.LOG, "a", encoding="utf-8") as log:
        log.write(f"--- foreground run started {time.ctime()}\n")
    status = run_job(run_dir, report=bar)
    bar.close()
    print(f"time: {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return _report_result(status, run_dir)
