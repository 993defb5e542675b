"""Fine-tune job: typed arguments, the LR schedule, preview/probe, and the process entry.

The job runs as its own process so it outlives the app that started it::

    python -m slmchat.engine.train RUN_DIR [--resume]
    accelerate launch [--config_file cfg.yaml] -m slmchat.engine.train RUN_DIR

It reads only ``RUN_DIR/args.json`` (a ``TrainArgs``) and writes status, progress and
checkpoints into the run folder (``runs.py``). The loop itself is in ``trainloop.py``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from slmchat.errors import InvalidParameterError, SlmChatError

Method = Literal["lora", "full", "qlora"]
METHODS: tuple[str, ...] = ("lora", "full", "qlora")
DEFAULT_LR = {"lora": 2e-4, "qlora": 2e-4, "full": 5e-5}


class TrainError(SlmChatError):
    """The model cannot be trained as asked (method/device/quantization mismatch)."""


@dataclass
class TrainArgs:
    """Everything a run needs; stored as RUN_DIR/args.json."""

    data: str
    model: str = "default"
    method: Method = "lora"
    out: str | None = None  # final adapter/model folder; default RUN_DIR/model
    max_steps: int | None = None  # wins over epochs when set
    epochs: float = 1.0
    lr: float | None = None  # None: DEFAULT_LR[method]
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    block_size: int = 256
    batch_size: int = 4
    grad_accum: int = 1
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: str = "all-linear"  # or comma-separated module names
    eval_fraction: float = 0.05
    max_eval_blocks: int = 64  # cap the held-out blocks scored at each eval
    eval_every: int | None = None  # None: ~10 evals per run
    save_every: int | None = None  # None: ~10 checkpoints per run
    keep_checkpoints: int = 2
    seed: int = 0
    bf16: Literal["auto", "on", "off"] = "auto"
    device: str = "auto"

    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.method]

    def validate(self) -> TrainArgs:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise InvalidParameterError(msg)

        need(self.method in METHODS, f"method must be one of {', '.join(METHODS)}")
        need(self.max_steps is None or self.max_steps >= 1, "--max-steps must be >= 1")
        need(self.epochs > 0, "--epochs must be > 0")
        need(self.lr is None or 0 < self.lr < 1, "--lr must be in (0, 1)")
        need(0 <= self.min_lr_ratio <= 1, "min_lr_ratio must be in [0, 1]")
        need(0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)")
        need(8 <= self.block_size <= 65536, "--block-size must be in [8, 65536]")
        need(self.batch_size >= 1, "--batch-size must be >= 1")
        need(self.grad_accum >= 1, "--grad-accum must be >= 1")
        need(self.lora_r >= 1 and self.lora_alpha >= 1, "--lora-r/--lora-alpha must be >= 1")
        need(0 <= self.lora_dropout < 1, "--lora-dropout must be in [0, 1)")
        need(0 < self.eval_fraction <= 0.5, "eval_fraction must be in (0, 0.5]")
        need(self.bf16 in ("auto", "on", "off"), "bf16 must be auto, on or off")
        need(self.keep_checkpoints >= 1, "keep_checkpoints must be >= 1")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainArgs:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def lr_at(step: int, total: int, args: TrainArgs) -> float:
    """Linear warmup then cosine decay to ``lr * min_lr_ratio`` (nanoGPT's get_lr).

    ``step`` counts optimizer steps from 0. The schedule is a pure function of the step,
    so resuming needs only the step number (stored in the checkpoint sidecar).
    """
    peak = args.learning_rate()
    warmup = max(1, round(total * args.warmup_ratio)) if args.warmup_ratio > 0 else 0
    if step < warmup:
        return peak * (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    floor = peak * args.min_lr_ratio
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))


def plan_steps(args: TrainArgs, train_blocks: int, world: int = 1) -> tuple[int, int]:
    """(total optimizer steps, steps per epoch)."""
    micro_per_epoch = math.ceil(train_blocks / args.batch_size)
    per_epoch = max(1, math.ceil(micro_per_epoch / (args.grad_accum * world)))
    if args.max_steps is not None:
        return args.max_steps, per_epoch
    return max(1, math.ceil(args.epochs * per_epoch)), per_epoch


def load_tokenizer(model: str) -> Any:
    """The tokenizer of ``model`` without loading its weights (for the preview)."""
    from slmchat.engine.models import ModelSpec, _load_tokenizer, _resolve_source, adapter_base
    from slmchat.engine.offline import ensure_offline

    ensure_offline()
    kind, path = _resolve_source(ModelSpec(path=model))
    if kind == "adapter":
        raise TrainError(f"{path} is a LoRA adapter; train on its base model "
                         f"({adapter_base(path)}) or merge it first (slmchat export)")
    if kind == "gguf":
        return _load_tokenizer(path.parent, gguf_file=path.name)
    return _load_tokenizer(path)


@dataclass(frozen=True)
class Preview:
    """Data numbers plus the step plan and (when probed) an estimated duration."""

    data: dict[str, Any]
    total_steps: int
    steps_per_epoch: int
    tokens_per_step: int
    epochs: float
    probe_tokens_per_s: float | None = None
    estimated_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        d = self.data
        out = [
            f"data       {d['files']} file(s), {d['bytes']:,} bytes, {d['documents']} document(s)",
            f"tokens     {d['tokens']:,} -> {d['blocks']} blocks of {d['block_size']}",
            f"split      {d['train_blocks']} train / {d['eval_blocks']} held-out blocks",
            f"steps      {self.total_steps} ({self.steps_per_epoch}/epoch, "
            f"{self.epochs:.2f} epochs, {self.tokens_per_step} tokens/step)",
        ]
        if self.estimated_s is not None and self.probe_tokens_per_s:
            out.append(f"estimate   ~{format_duration(self.estimated_s)} "
                       f"at {self.probe_tokens_per_s:.0f} train tok/s (measured probe)")
        return out


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def preview(args: TrainArgs, probe_steps: int = 0) -> Preview:
    """Validate and measure the data (DataError on bad input), plan the steps, and with
    ``probe_steps`` > 0 time a few real training steps for a duration estimate."""
    from slmchat.engine.data import prepare_data

    args.validate()
    tokenizer = load_tokenizer(args.model)
    prepared = prepare_data(args.data, tokenizer, args.block_size, args.eval_fraction, args.seed)
    total, per_epoch = plan_steps(args, len(prepared.train))
    tokens_per_step = args.block_size * args.batch_size * args.grad_accum
    epochs = total / per_epoch
    tps = est = None
    if probe_steps > 0:
        from slmchat.engine.trainloop import probe_speed

        tps, eval_s = probe_speed(args, prepared, probe_steps)
        evals = 2 + math.ceil(total / eval_interval(args, total))
        est = total * tokens_per_step / tps + evals * eval_s
    return Preview(prepared.preview.as_dict(), total, per_epoch, tokens_per_step, epochs, tps, est)


def eval_interval(args: TrainArgs, total: int) -> int:
    return args.eval_every or max(1, total // 10)


def save_interval(args: TrainArgs, total: int) -> int:
    return args.save_every or max(1, total // 10)


def _check_writable(out: Path) -> None:
    """Fail now, not after hours of training, when the result could not be saved.

    Probes with a real temp file (``os.access`` says yes to root on read-only mounts).
    """
    import tempfile

    probe = out.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        if not probe.is_dir():
            raise NotADirectoryError(f"{probe} is not a folder")
        tempfile.TemporaryFile(dir=probe).close()
    except OSError as exc:
        raise InvalidParameterError(
            f"cannot write the result to {out.parent}: {exc.strerror or exc}") from exc


def prepare_run(args: TrainArgs, run_dir: Path | None = None) -> Path:
    """Validate ``args`` and write a new run folder (not started)."""
    from slmchat.engine.runs import ARGS, new_run_dir, write_json_atomic, write_status

    args.validate()
    data = Path(args.data).expanduser().resolve()
    args.data = str(data)
    if args.out:
        out = Path(args.out).expanduser().resolve()
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise InvalidParameterError(f"output folder {out} already exists and is not empty")
        _check_writable(out)
        args.out = str(out)
    if run_dir is None:
        run_dir = new_run_dir(data.stem)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / ARGS, args.to_dict())
    write_status(run_dir, state="pending", pid=None, step=0, started_at=time.time(),
                 message="prepared")
    return run_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m slmchat.engine.train")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last checkpoint (default when one exists)")
    ns = parser.parse_args(argv)
    from slmchat.engine.trainloop import run_job

    result = run_job(ns.run_dir, resume=True)
    state = result.get("state")
    print(f"slmchat finetune: {state}: {result.get('message', '')}", file=sys.stderr)
    return 0 if state in ("done", "cancelled") else 1


if __name__ == "__main__":
    sys.exit(main())
