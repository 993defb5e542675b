"""One fine-tune job over a run folder: status, progress rows, checkpoints, final output.

``FinetuneJob(run_dir).run()`` starts a run or continues it from its newest complete checkpoint
(the same code path, so "resume" is just "run again"). Only the main process of an
``accelerate launch`` writes into the run folder.
"""

from __future__ import annotations

import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from slmchat.engine.finetune import rundir as runs
from slmchat.engine.finetune.args import TrainArgs, eval_interval, plan_steps, save_interval
from slmchat.engine.finetune.checkpoints import load_best, load_checkpoint, save_best, save_checkpoint
from slmchat.engine.finetune.loop import (
    Report,
    Stopper,
    build_model,
    disk_full,
    evaluate,
    make_optimizer,
    train_steps,
    use_bf16,
)
from slmchat.engine.finetune.plan import load_tokenizer, reading_line
from slmchat.errors import SlmChatError


def _ppl(loss: float | None) -> float | None:
    if loss is None:
        return None
    return math.exp(min(loss, 50.0))


class FinetuneJob:
    def __init__(self, run_dir: Path, report: Report | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.report = report or (lambda row: None)
        # Under accelerate launch / torchrun only rank 0 writes into the run folder.
        self.main = int(os.environ.get("RANK", "0") or 0) == 0
        self.phase = "starting"
        self.reference: dict[str, Any] = {}  # DPO: the base model's reply log-probs

    # -- status helpers -------------------------------------------------------------
    def _status(self, **fields: Any) -> dict[str, Any]:
        if not self.main:
            return fields
        status = runs.write_status(self.run_dir, **fields)
        self.report({"event": "status", **status})
        return status

    def _finish(self, state: str, message: str, **extra: Any) -> dict[str, Any]:
        fields = {"state": state, "message": message, "finished_at": time.time(), **extra}
        try:
            return self._status(**fields)
        except OSError as exc:  # a full disk: the reason still reaches the caller
            print(f"slmchat: cannot write the run's status ({exc.strerror or exc}): "
                  f"{state}: {message}", file=sys.stderr)
            status = {**runs.read_status(self.run_dir), **fields}
            self.report({"event": "status", **status})
            return status

    def run(self) -> dict[str, Any]:
        if not (self.run_dir / runs.ARGS).is_file():
            raise SlmChatError(f"not a run folder (no {runs.ARGS}): {self.run_dir}")
        status = runs.read_status(self.run_dir)
        if status.get("state") == "done" and Path(str(status.get("out", ""))).is_dir():
            return status
        hint = f"slmchat finetune --resume {self.run_dir}"
        try:
            self.phase = "writing the run's status"
            self._status(state="running", pid=os.getpid(), message="loading data")
            return self._run()
        except SlmChatError as exc:
            return self._finish("failed", str(exc))
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            if disk_full(exc):
                return self._finish("failed", f"disk full while {self.phase}: free some "
                                    f"space, then resume with: {hint}")
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            if "out of memory" in first.lower():
                return self._finish("failed", f"out of memory while {self.phase}: lower "
                                    f"--batch-size or --block-size, then resume: {hint}")
            return self._finish("failed", f"{type(exc).__name__} while {self.phase}: {first}")
        finally:
            _reset_accelerate()

    def _load_newest_intact(self, model: Any, optimizer: Any
                            ) -> tuple[dict[str, Any] | None, list[str]]:
        """Restore the newest checkpoint that loads; a truncated or damaged newer one (a
        full disk, a bad copy) is skipped with its reason and the previous one used.
        Returns (its sidecar or None when there is none, what was skipped). Every one
        damaged is an error: starting over silently would throw the run away."""
        damaged: list[str] = []
        for _, path in reversed(runs.checkpoints(self.run_dir)):
            self.phase = f"loading checkpoint {path.name}"
            try:
                # Each load sets every trainable weight, the optimizer and the RNG, so a
                # half-applied damaged one leaves nothing behind.
                return load_checkpoint(path, model, optimizer), damaged
            except MemoryError:
                raise
            except Exception as exc:
                why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                damaged.append(f"{path.name}: {why}")
                print(f"slmchat: checkpoint {path} cannot be loaded ({why}); trying the "
                      "one before it", file=sys.stderr)
        if damaged:
            raise SlmChatError(f"no checkpoint of {self.run_dir} can be loaded: "
                               + "; ".join(damaged))
        return None, damaged

    # -- the job ----------------------------------------------------------------------
    def _run(self) -> dict[str, Any]:
        from accelerate import Accelerator

        from slmchat.engine.devices import configure_threads, resolve_device
        from slmchat.engine.finetune.data import prepare_data

        args = TrainArgs.from_dict(runs.read_json(self.run_dir / runs.ARGS)).validate()
        device = resolve_device(args.device)
        accelerator = Accelerator(cpu=device == "cpu")
        world, rank = accelerator.num_processes, accelerator.process_index
        self.main = accelerator.is_main_process
        if world > 1 or device != "cpu":
            dev = accelerator.device
            device = "cpu" if dev.type == "cpu" else str(dev)
        threads = None
        if device == "cpu":
            reserve = os.environ.get(runs.RESERVE_ENV, "")
            threads = configure_threads(reserve=int(reserve) if reserve.isdigit() else 0)
        bf16 = use_bf16(args, device)
        # Data problems are found before the (slow) model load.
        tokenizer = load_tokenizer(args.model)
        self.phase = "reading the training data"
        prepared: Any
        if args.method == "dpo":
            from slmchat.engine.finetune.dpo import prepare_pairs

            prepared = prepare_pairs(args.data, tokenizer, args.block_size, args.eval_fraction,
                                     args.seed)
        else:
            prepared = prepare_data(args.data, tokenizer, args.block_size, args.eval_fraction,
                                    args.seed, mask_prompt=args.mask_prompt,
                                    progress=self._reading_progress())
        args = replace(args, block_size=prepared.preview.block_size)
        total, _ = plan_steps(args, len(prepared.train), world)
        self.phase = "loading the model"
        self._status(message="loading model", total_steps=total, data=prepared.preview.as_dict(),
                     bf16=bf16, device=device, world_size=world, threads=threads)
        model, tokenizer, base = build_model(args, device, bf16)
        optimizer = make_optimizer(model, args)
        if world > 1:
            model, optimizer = accelerator.prepare(model, optimizer)
        inner = accelerator.unwrap_model(model) if world > 1 else model
        if args.method == "dpo":
            if world > 1:
                raise SlmChatError("DPO runs in one process; start it without accelerate "
                                   "launch")
            from slmchat.engine.finetune.dpo import reference_logps

            self.phase = "scoring the pairs with the base model"
            self._status(message="scoring the pairs with the base model")
            self.reference = reference_logps(model, prepared, args, device, self.run_dir)

        def scores(model: Any) -> dict[str, Any]:
            """Held-out figures: loss and perplexity, or DPO loss and preference share."""
            if args.method == "dpo":
                from slmchat.engine.finetune.dpo import evaluate_pairs

                got = evaluate_pairs(model, prepared.eval, self.reference["eval"], args, device)
                return {"eval_loss": got["loss"], "pref_share": got["pref_share"],
                        "reward_accuracy": got["reward_accuracy"]}
            loss = evaluate(model, prepared.eval, args, device, bf16, prepared.eval_mask)
            return {"eval_loss": loss, "perplexity": _ppl(loss)}

        metrics: dict[str, Any] = {}
        start, elapsed0 = 0, 0.0
        state, damaged = self._load_newest_intact(inner, optimizer)
        if state is not None:
            start, elapsed0 = int(state["step"]), float(state.get("elapsed_s", 0.0))
            metrics = dict(state.get("metrics") or {})
            if self.main:
                runs.truncate_progress(self.run_dir, start)
        else:
            if self.main:
                (self.run_dir / runs.PROGRESS).unlink(missing_ok=True)
            self.phase = "scoring the held-out split"
            first = scores(model)
            metrics = {f"{k}_before": v for k, v in first.items()}
            self._progress({"step": 0, "total_steps": total, "epoch": 0.0, **first,
                            "elapsed_s": 0.0})
        skipped = f" (skipped damaged {'; '.join(damaged)})" if damaged else ""
        self._status(message=f"training from step {start}{skipped}", step=start,
                     total_steps=total, metrics=metrics, base_model=base)

        every_eval, every_save = eval_interval(args, total), save_interval(args, total)
        t_start = time.perf_counter()
        train_s, tokens, steps_done, last_eval_s = 0.0, 0, 0, 0.0
        step, last_saved = start, start
        eval_loss = metrics.get("eval_loss_after")
        stop = EarlyStop(args, metrics)
        per_epoch = max(1, len(prepared.train) / (args.batch_size * args.grad_accum * world))
        with Stopper(self.run_dir) as stopper:
            if args.method == "dpo":
                from slmchat.engine.finetune.dpo import dpo_steps

                rows = dpo_steps(model, optimizer, prepared, self.reference["train"], args,
                                 device=device, start_step=start, total=total, stopper=stopper)
            else:
                rows = train_steps(model, optimizer, prepared, args, device=device, bf16=bf16,
                                   start_step=start, total=total, world=world, rank=rank,
                                   accelerator=accelerator if world > 1 else None,
                                   stopper=stopper)
            for row in rows:
                step = row["step"]
                train_s += row["step_s"]
                tokens += row["tokens"]
                steps_done += 1
                out: dict[str, Any] = {"step": step, "total_steps": total, "loss": row["loss"],
                                       "lr": row["lr"], "epoch": step / per_epoch,
                                       "tokens_per_s": tokens / max(train_s, 1e-9)}
                if step % every_eval == 0 or step == total:
                    self.phase = f"evaluating at step {step}"
                    t0 = time.perf_counter()
                    now = scores(model)
                    eval_loss = now["eval_loss"]
                    last_eval_s = time.perf_counter() - t0
                    out.update(now)
                    if stop.observe(step, eval_loss) and self.main:
                        self.phase = f"keeping the best weights (step {step})"
                        save_best(self.run_dir, step, inner, eval_loss)
                    metrics.update(stop.as_metrics())
                left = total - step
                out["elapsed_s"] = elapsed0 + time.perf_counter() - t_start
                out["eta_s"] = (left * train_s / steps_done
                                + math.ceil(left / every_eval) * last_eval_s)
                self._progress(out)
                if step % every_save == 0 and step < total:
                    self._checkpoint(step, inner, optimizer, args, metrics, out["elapsed_s"])
                    last_saved = step
                self._status(step=step, message=f"step {step}/{total}")
                if stop.stopped_at is not None:
                    break
            elapsed = elapsed0 + time.perf_counter() - t_start
            if step < total and stop.stopped_at is None:  # cancelled: keep the work so far
                if step > last_saved:
                    self._checkpoint(step, inner, optimizer, args, metrics, elapsed)
                return self._finish("cancelled", f"cancelled at step {step}/{total}; resume "
                                    f"with: slmchat finetune --resume {self.run_dir}", step=step)
        if eval_loss is None:
            eval_loss = scores(model)["eval_loss"]
        kept = step
        if stop.best_step is not None and stop.best_step != step and stop.best_loss is not None:
            self.phase = f"restoring the best weights (step {stop.best_step})"
            if load_best(self.run_dir, stop.best_step, inner):
                kept, eval_loss = stop.best_step, stop.best_loss
        metrics.update(stop.as_metrics(), result_step=kept, last_step=step)
        if args.method == "dpo":  # the preference share of the weights kept
            metrics.update({f"{k}_after": v for k, v in scores(model).items()})
        metrics.update(eval_loss_after=eval_loss,
                       perplexity_after=None if args.method == "dpo" else _ppl(eval_loss),
                       train_tokens_per_s=tokens / max(train_s, 1e-9) if tokens else None,
                       elapsed_s=elapsed)
        if world > 1:
            accelerator.wait_for_everyone()
        out_dir = Path(args.out) if args.out else self.run_dir / "model"
        if self.main:
            self.phase = f"saving the result to {out_dir}"
            self._status(message="saving", metrics=metrics)
            from slmchat.engine.finetune.result import save_output

            save_output(inner, tokenizer, args, base, prepared.preview.as_dict(), metrics,
                        out_dir)
        note = ""
        if stop.stopped_at is not None:
            note = (f" (stopped early at step {stop.stopped_at}: held-out loss stopped "
                    f"improving)")
        if kept != step:
            note += f"; kept the best step {kept}"
        return self._finish("done", f"finished: {out_dir}{note}", out=str(out_dir),
                            metrics=metrics, step=step)

    def _reading_progress(self) -> Callable[[int, int], None]:
        """Status messages while the data is tokenised (at most one a second)."""
        last = [0.0]

        def report(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= 1.0 or done >= total:
                last[0] = now
                self._status(message=f"tokenising the data: {reading_line(done, total)}")

        return report

    def _progress(self, row: dict[str, Any]) -> None:
        if self.main:
            runs.append_progress(self.run_dir, row)
            self.report({"event": "progress", **row})

    def _checkpoint(self, step: int, model: Any, optimizer: Any, args: TrainArgs,
                    metrics: dict[str, Any], elapsed: float) -> None:
        if not self.main:
            return
        self.phase = f"saving checkpoint step {step}"
        save_checkpoint(self.run_dir, step, model, optimizer,
                        {"metrics": metrics, "elapsed_s": elapsed, "args": args.to_dict(),
                         "schedule": {"kind": "warmup_cosine", "step": step}},
                        keep=args.keep_checkpoints)
        self.phase = "training"


class EarlyStop:
    """Early stopping on held-out loss: ``patience`` evaluations without a new best (by
    more than ``min_delta``) end the run, and the best evaluated step becomes the result.
    Step 0 (the untrained model) is not a candidate: a run always returns trained
    weights. Its state lives in the run's metrics, so a resumed run keeps counting."""

    def __init__(self, args: TrainArgs, metrics: dict[str, Any]) -> None:
        self.patience = args.early_stop_patience
        self.min_delta = args.early_stop_min_delta
        self.best_loss: float | None = metrics.get("best_eval_loss")
        self.best_step: int | None = metrics.get("best_step")
        self.bad = int(metrics.get("bad_evals") or 0)
        self.stopped_at: int | None = None

    def observe(self, step: int, loss: float) -> bool:
        """Record an evaluation; True when it is a new best (keep its weights)."""
        if self.patience <= 0:
            return False
        if self.best_loss is None or loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_step, self.bad = loss, step, 0
            return True
        self.bad += 1
        if self.bad >= self.patience:
            self.stopped_at = step
        return False

    def as_metrics(self) -> dict[str, Any]:
        if self.patience <= 0:
            return {}
        return {"best_eval_loss": self.best_loss, "best_step": self.best_step,
                "bad_evals": self.bad, "stopped_early_at": self.stopped_at}


def _reset_accelerate() -> None:
    """Several jobs in one process (tests, the probe) must not share accelerate's
    singleton state; a real job process ends right after anyway."""
    try:
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    except Exception:
        pass


def run_job(run_dir: Path, report: Report | None = None) -> dict[str, Any]:
    """Run (or continue) the job in ``run_dir``; returns the final status dict.

    Never raises for the user's problems: they end as state "failed" with a message in
    status.json, which is what the panel and the CLI show.
    """
    return FinetuneJob(run_dir, report).run()


