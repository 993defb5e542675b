"""Typed fine-tune arguments and the step plan (LR schedule, eval/save intervals): a leaf."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from slmchat.errors import InvalidParameterError, SlmChatError

# dpo: preference tuning of a LoRA adapter on (prompt, chosen, rejected) pairs (dpo.py)
Method = Literal["lora", "full", "qlora", "dpo"]
METHODS: tuple[str, ...] = ("lora", "full", "qlora", "dpo")
# LoRA 5e-4: with the held-out end of the file and the block size for short texts, the
# 40-step run lowers the perplexity of the text that FOLLOWS the training file more than
# the previous 2e-4 on every text measured (benchmarks/bench_finetune_recipe.py, README).
DEFAULT_LR = {"lora": 5e-4, "qlora": 5e-4, "full": 5e-5, "dpo": 1e-4}


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
    block_size: int | None = None  # None: chosen from the data's length (data.auto_block_size)
    batch_size: int = 4
    grad_accum: int = 1
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: str = "all-linear"  # or comma-separated module names
    # The held-out split is the end of each file: at least this share of the blocks and at
    # least data.MIN_EVAL_BLOCKS of them where the text allows.
    eval_fraction: float = 0.1
    max_eval_blocks: int = 64  # cap the held-out blocks scored at each eval
    eval_every: int | None = None  # None: ~10 evals per run
    save_every: int | None = None  # None: ~10 checkpoints per run
    keep_checkpoints: int = 2
    mask_prompt: bool = True  # chat rows: loss on the assistant's tokens only
    # Stop after this many evaluations without a lower held-out loss (0: never) and keep
    # the best evaluated weights as the result, not the last.
    early_stop_patience: int = 3
    early_stop_min_delta: float = 0.0
    seed: int = 0
    dpo_beta: float = 0.1  # DPO: how far from the base model the preferences may pull
    bf16: Literal["auto", "on", "off"] = "auto"
    device: str = "auto"

    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.method]

    def block(self) -> int:
        """The block size, once the data has chosen it (``prepare_data``'s preview)."""
        if self.block_size is None:
            raise ValueError("the block size is chosen when the data is prepared")
        return self.block_size

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
        need(self.block_size is None or 8 <= self.block_size <= 65536,
             "--block-size must be in [8, 65536]")
        need(self.batch_size >= 1, "--batch-size must be >= 1")
        need(self.grad_accum >= 1, "--grad-accum must be >= 1")
        need(self.lora_r >= 1 and self.lora_alpha >= 1, "--lora-r/--lora-alpha must be >= 1")
        need(0 <= self.lora_dropout < 1, "--lora-dropout must be in [0, 1)")
        need(0 < self.eval_fraction <= 0.5, "eval_fraction must be in (0, 0.5]")
        need(self.bf16 in ("auto", "on", "off"), "bf16 must be auto, on or off")
        need(self.keep_checkpoints >= 1, "keep_checkpoints must be >= 1")
        need(self.early_stop_patience >= 0, "--early-stop-patience must be >= 0 (0: off)")
        need(self.early_stop_min_delta >= 0, "early_stop_min_delta must be >= 0")
        need(0 < self.dpo_beta <= 10, "--dpo-beta must be in (0, 10]")
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


def planned_tokens(args: TrainArgs, train_blocks: int, total: int, world: int = 1) -> int:
    """Real tokens that ``total`` steps train on. An epoch's last micro-batch is short,
    and with fewer training blocks than the batch size every micro-batch is."""
    per_epoch = max(1, math.ceil(train_blocks / args.batch_size))
    full_epochs, rest = divmod(total * args.grad_accum * world, per_epoch)
    # The ``rest`` micro-batches of a started epoch come before its short last one.
    blocks = full_epochs * train_blocks + rest * min(args.batch_size, train_blocks)
    return blocks * args.block()


def eval_interval(args: TrainArgs, total: int) -> int:
    return args.eval_every or max(1, total // 10)


def save_interval(args: TrainArgs, total: int) -> int:
    return args.save_every or max(1, total // 10)


