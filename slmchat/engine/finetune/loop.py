"""The training loop behind ``job.py`` (``FinetuneJob``): model setup, steps, eval, checkpoints,
output.

A plain loop (nanoGPT style) rather than ``transformers.Trainer``: every step reports a
plain dict, the schedule and the data order are pure functions of the step (so a run
folder is enough to resume), and checkpoints are small and pickle-free. ``accelerate``
provides the device, DDP and gradient sync when started by ``accelerate launch``; a
plain ``python -m`` start is a one-process run on the same code path.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import random
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from slmchat.engine.finetune.args import TrainArgs, TrainError, lr_at
from slmchat.engine.finetune.data import PreparedData
from slmchat.errors import first_line

Report = Callable[[dict[str, Any]], None]


def bf16_supported(device: str) -> bool:
    """bf16 autocast pays off on GPUs with bf16 and CPUs with AVX512-BF16/AMX; on plain
    AVX2 CPUs it is emulated and slower than fp32, so ``auto`` leaves it off there."""
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_bf16_supported())
    if device == "cpu":
        cpu = getattr(torch, "cpu", None)
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)
    return False


def use_bf16(args: TrainArgs, device: str) -> bool:
    return args.bf16 == "on" or (args.bf16 == "auto" and bf16_supported(device))


def autocast(device: str, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    import torch

    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)


def build_model(args: TrainArgs, device: str, bf16: bool) -> tuple[Any, Any, str]:
    """(model ready to train, tokenizer, base path recorded in the output)."""
    import torch

    from slmchat.engine.model.loader import load
    from slmchat.engine.model.spec import ModelSpec

    spec = ModelSpec(path=args.model, dtype="fp32", device=device)
    if args.method == "qlora":
        if device == "mps":
            raise TrainError("QLoRA needs bitsandbytes 4-bit training, which this device "
                             "(mps) does not support; use --method lora")
        spec = spec.with_(quant="4bit", bnb_4bit_compute_dtype="bf16" if bf16 else "fp32")
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    loaded = load(spec)
    if loaded.info.kind == "adapter":
        raise TrainError(f"{args.model} is a LoRA adapter; train on its base model instead "
                         "or merge it first (slmchat export)")
    model = loaded.model
    quantized = loaded.info.quant not in ("none", "4bit") or (
        loaded.info.quant == "4bit" and args.method != "qlora")
    if quantized:
        raise TrainError(
            f"{args.model} is quantized ({loaded.info.quant}) and cannot be trained with "
            f"--method {args.method}; fine-tune its full-precision original instead")
    if args.method == "full":
        model.requires_grad_(True)
    else:
        from peft import LoraConfig, get_peft_model

        if args.method == "qlora":
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
            if device == "cpu":
                keep_4bit_trainable(model)
        targets: Any = args.lora_targets
        if targets != "all-linear":
            targets = [t.strip() for t in targets.split(",") if t.strip()]
        config = LoraConfig(
            r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
            target_modules=targets, task_type="CAUSAL_LM",
        )
        try:
            model = get_peft_model(model, config)
        except ValueError as exc:
            raise TrainError(f"LoRA target modules {args.lora_targets!r} do not fit "
                             f"this model: {first_line(exc)[:200]}") from exc
    model.train()
    return model, loaded.tokenizer, loaded.info.path


def keep_4bit_trainable(model: Any) -> int:
    """Keep bitsandbytes' 4-bit layers on their differentiable path on the CPU.

    On a CPU with AVX512-BF16 a 4-bit layer that runs in eval mode without gradients
    (the held-out evaluation) repacks its weights in place into an inference layout;
    every later forward, training included, then goes through ``gemv_4bit``, which has
    no backward ("an autograd kernel was not registered ... silently incorrect"): the
    LoRA weights before a 4-bit layer get no gradient through it, in bf16. Turning the
    CPU inference path off keeps evaluation and training on the dequantize-and-matmul
    path, whose gradients match an fp32 reference (tests/engine/finetune/
    test_qlora_cpu.py). Returns the number of layers changed."""
    changed = 0
    for module in model.modules():
        if getattr(module, "support_avx512bf16_for_cpu", False):
            module.support_avx512bf16_for_cpu = False
            changed += 1
    return changed


def micro_indices(args: TrainArgs, n_train: int, index: int) -> list[int]:
    """Global micro-batch ``index`` as block indices: a pure function of (seed, index), so
    any process and any resumed run agrees on the data order without saving it."""
    per_epoch = math.ceil(n_train / args.batch_size)
    epoch, pos = divmod(index, per_epoch)
    order = list(range(n_train))
    random.Random(args.seed * 1_000_003 + epoch).shuffle(order)
    return order[pos * args.batch_size:(pos + 1) * args.batch_size]


def micro_batch(args: TrainArgs, train: Sequence[list[int]], index: int) -> list[list[int]]:
    return [train[i] for i in micro_indices(args, len(train), index)]


def labels_for(x: Any, masks: Sequence[list[int]] | None) -> Any:
    """Labels = the input ids, with -100 (ignored by the loss) where the mask is 0."""
    import torch

    if masks is None:
        return x
    keep = torch.tensor(list(masks), dtype=torch.bool, device=x.device)
    return torch.where(keep, x, torch.full_like(x, -100))


def evaluate(model: Any, blocks: Sequence[list[int]], args: TrainArgs, device: str,
             bf16: bool, masks: Sequence[list[int]] | None = None) -> float:
    """Mean token loss on the held-out blocks: all of them, or ``max_eval_blocks`` spread
    evenly over them (so every file's held-out end counts, not only the first ones)."""
    import torch

    step = math.ceil(len(blocks) / max(1, args.max_eval_blocks))
    blocks = blocks[::step][:args.max_eval_blocks]
    masks = masks[::step][:args.max_eval_blocks] if masks is not None else None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(blocks), args.batch_size):
            x = torch.tensor(list(blocks[i:i + args.batch_size]), device=device)
            labels = labels_for(x, masks[i:i + args.batch_size] if masks is not None else None)
            with autocast(device, bf16):
                loss = model(input_ids=x, labels=labels).loss
            total += float(loss) * len(x)
            count += len(x)
    if was_training:
        model.train()
    return total / max(1, count)


class Stopper:
    """SIGTERM/SIGINT or a cancel file -> finish the current step, checkpoint, exit."""

    def __init__(self, run_dir: Path | None) -> None:
        self.run_dir = run_dir
        self.flag = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Stopper:
        with contextlib.suppress(ValueError):  # not in the main thread: file only
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handle(self, signum: int, frame: object) -> None:
        self.flag = True

    @property
    def stop(self) -> bool:
        if not self.flag and self.run_dir is not None:
            from slmchat.engine.finetune.rundir import cancel_requested

            self.flag = cancel_requested(self.run_dir)
        return self.flag


def train_steps(
    model: Any, optimizer: Any, prepared: PreparedData, args: TrainArgs, *, device: str,
    bf16: bool, start_step: int, total: int, accelerator: Any = None,
    world: int = 1, rank: int = 0, stopper: Stopper | None = None,
) -> Iterator[dict[str, Any]]:
    """Run optimizer steps ``start_step+1 .. total``; yield a dict after each one."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    tokens_per_step = args.block() * args.batch_size * args.grad_accum * world
    for step in range(start_step + 1, total + 1):
        if stopper is not None and stopper.stop:
            return
        t0 = time.perf_counter()
        lr = lr_at(step - 1, total, args)
        for group in optimizer.param_groups:
            group["lr"] = lr
        losses, tokens = [], 0
        for k in range(args.grad_accum):
            index = ((step - 1) * args.grad_accum + k) * world + rank
            rows = micro_indices(args, len(prepared.train), index)
            x = torch.tensor([prepared.train[i] for i in rows], device=device)
            masks = prepared.train_mask
            labels = labels_for(x, [masks[i] for i in rows] if masks is not None else None)
            sync = k == args.grad_accum - 1 or accelerator is None
            ctx = contextlib.nullcontext() if sync else accelerator.no_sync(model)
            with ctx:
                with autocast(device, bf16):
                    loss = model(input_ids=x, labels=labels).loss
                scaled = loss / args.grad_accum
                if accelerator is not None:
                    accelerator.backward(scaled)
                else:
                    scaled.backward()
            losses.append(float(loss.detach()))
            tokens += x.numel()
        if args.max_grad_norm > 0:
            if accelerator is not None:
                accelerator.clip_grad_norm_(params, args.max_grad_norm)
            else:
                torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = sum(losses) / len(losses)
        if not math.isfinite(loss_value):
            raise TrainError(f"the loss became {loss_value} at step {step}; "
                             "lower --lr and start again")
        yield {"step": step, "loss": loss_value, "lr": lr, "tokens": tokens * world,
               "step_s": time.perf_counter() - t0, "tokens_per_step": tokens_per_step}


def make_optimizer(model: Any, args: TrainArgs) -> Any:
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=args.learning_rate(), weight_decay=args.weight_decay)


def probe_speed(args: TrainArgs, prepared: PreparedData, steps: int = 3) -> tuple[float, float]:
    """(train tokens/s, seconds per eval) measured on a few real steps, nothing saved.

    The first step is a warm-up (allocations, kernel selection) and is not timed.
    """
    from slmchat.engine.devices import resolve_device

    device = resolve_device(args.device)
    bf16 = use_bf16(args, device)
    model, _, _ = build_model(args, device, bf16)
    optimizer = make_optimizer(model, args)
    total = max(steps + 1, 2)
    timed_s, timed_tokens = 0.0, 0
    for row in train_steps(model, optimizer, prepared, args, device=device, bf16=bf16,
                           start_step=0, total=total):
        if row["step"] > 1:
            timed_s += row["step_s"]
            timed_tokens += row["tokens"]
    t0 = time.perf_counter()
    evaluate(model, prepared.eval, args, device, bf16, prepared.eval_mask)
    return timed_tokens / max(timed_s, 1e-9), time.perf_counter() - t0


def disk_full(exc: BaseException) -> bool:
    """ENOSPC or EDQUOT, also when a library reports it in its own words: safetensors
    raises SafetensorError("... No space left on device (os error 28)")."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(exc)
    return any(f"(os error {code})" in text or os.strerror(code) in text
               for code in (errno.ENOSPC, errno.EDQUOT))
