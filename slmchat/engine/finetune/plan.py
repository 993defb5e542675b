"""Planning a fine-tune: the tokenizer preview, a measured duration estimate, a new run folder.

The job runs as its own process so it outlives the app that started it::

    python -m slmchat.engine.finetune RUN_DIR
    accelerate launch [--config_file cfg.yaml] -m slmchat.engine.finetune RUN_DIR

It reads only ``RUN_DIR/args.json`` (a ``TrainArgs``) and writes status, progress and
checkpoints into the run folder (``rundir.py``); ``job.py`` runs it over ``loop.py``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from slmchat.engine.finetune.args import (
    TrainArgs,
    TrainError,
    eval_interval,
    plan_steps,
    planned_tokens,
)
from slmchat.errors import InvalidParameterError
from slmchat.fmt import format_duration


def load_tokenizer(model: str) -> Any:
    """The tokenizer of ``model`` without loading its weights (for the preview)."""
    from slmchat.engine.model.files import adapter_base, resolve_source
    from slmchat.engine.model.loader import _load_tokenizer
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.offline import ensure_offline

    ensure_offline()
    kind, path = resolve_source(ModelSpec(path=model))
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
    warnings: tuple[str, ...] = ()
    pairs: bool = False  # DPO: the data are preference pairs
    max_eval_blocks: int | None = None  # held-out blocks an evaluation scores at most

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def _pair_lines(self) -> list[str]:
        d = self.data
        return [
            f"data       {d['files']} file(s), {d['bytes']:,} bytes, {d['documents']} "
            "preference pair(s)",
            f"split      {d['train_blocks']} train / {d['eval_blocks']} held-out pairs "
            f"(prompt + reply up to {d['block_size']} tokens)",
            f"loss on    {d['trained_tokens']:,} reply tokens (DPO: chosen vs rejected)",
            f"steps      {self.total_steps} ({self.steps_per_epoch}/epoch, "
            f"{self.epochs:.2f} epochs)",
            *[f"warning    {w}" for w in self.warnings],
        ]

    def lines(self) -> list[str]:
        d = self.data
        if self.pairs:
            return self._pair_lines()
        out = [
            f"data       {d['files']} file(s), {d['bytes']:,} bytes, {d['documents']} document(s)",
            f"tokens     {d['tokens']:,} -> {d['blocks']} blocks of {d['block_size']}"
            + (" (block size chosen for the text's length)" if d.get("auto_block") else ""),
            f"split      {d['train_blocks']} train / {d['eval_blocks']} held-out blocks",
            f"held out   {held_out_line(d, self.max_eval_blocks)}",
            *([f"loss on    {d['trained_tokens']:,} assistant tokens (chat rows, prompt "
               "masked)"] if d.get("masked") else []),
            f"steps      {self.total_steps} = {self.epochs:.1f} epochs (passes over the "
            f"training blocks; {self.steps_per_epoch} steps/epoch, "
            f"{self.tokens_per_step} tokens/step)",
        ]
        if self.estimated_s is not None and self.probe_tokens_per_s:
            out.append(f"estimate   ~{format_duration(self.estimated_s)} "
                       f"at {self.probe_tokens_per_s:.0f} train tok/s (measured probe)")
        out += [f"warning    {w}" for w in self.warnings]
        return out


def held_out_line(data: dict[str, Any], scored: int | None = None) -> str:
    """What the held-out perplexity is measured on, in words (preview, summary). ``scored``:
    the most held-out blocks an evaluation scores (``max_eval_blocks``)."""
    where = "the end of the text" if int(data.get("files") or 1) == 1 else \
        "the end of each file"
    tokens = data.get("eval_tokens")
    if tokens is None:  # a run prepared by an older version
        return f"{data.get('eval_blocks')} blocks"
    share = 100 * tokens / max(1, int(data.get("tokens") or 1))
    line = f"{where}: {tokens:,} tokens ({share:.0f} %), never trained on"
    if scored is not None and int(data.get("eval_blocks") or 0) > scored:
        line += f"; each evaluation scores {scored} blocks spread over it"
    return line


def reading_line(done: int, total: int) -> str:
    """'120 / 500 MB (24%)': how far the tokenisation of the data has read."""
    return (f"{done / 2**20:,.0f} / {total / 2**20:,.0f} MB "
            f"({100 * done / max(total, 1):.0f}%)")


def preview(args: TrainArgs, probe_steps: int = 0,
            progress: Callable[[int, int], None] | None = None) -> Preview:
    """Validate and measure the data (DataError on bad input), plan the steps, and with
    ``probe_steps`` > 0 time a few real training steps for a duration estimate.

    The data is tokenised once into the token cache (``data.tokenise``), which the run
    reuses; ``progress(bytes_read, bytes_total)`` is called while that happens."""
    from slmchat.engine.finetune.data import prepare_data

    args.validate()
    tokenizer = load_tokenizer(args.model)
    prepared: Any
    if args.method == "dpo":
        from slmchat.engine.finetune.dpo import prepare_pairs

        prepared = prepare_pairs(args.data, tokenizer, args.block_size, args.eval_fraction,
                                 args.seed)
        probe_steps = 0  # the probe times language-model steps, not pair steps
    else:
        prepared = prepare_data(args.data, tokenizer, args.block_size, args.eval_fraction,
                                args.seed, mask_prompt=args.mask_prompt, progress=progress)
    args = replace(args, block_size=prepared.preview.block_size)
    total, per_epoch = plan_steps(args, len(prepared.train))
    tokens = planned_tokens(args, len(prepared.train), total)  # real tokens, not padded
    tokens_per_step = round(tokens / total)
    epochs = total / per_epoch
    tps = est = None
    if probe_steps > 0:
        from slmchat.engine.finetune.loop import probe_speed

        tps, eval_s = probe_speed(args, prepared, probe_steps)  # real tokens per second
        evals = 2 + math.ceil(total / eval_interval(args, total))
        est = tokens / tps + evals * eval_s
    warnings = [w for w in (prepared.preview.eval_warning,) if w]
    if len(prepared.train) < args.batch_size and args.method != "dpo":
        warnings.append(
            f"only {len(prepared.train)} training block(s) for a batch of {args.batch_size}: "
            "every step sees the same text, so the model will overfit (add text or lower "
            "the block size)")
    return Preview(prepared.preview.as_dict(), total, per_epoch, tokens_per_step, epochs, tps,
                   est, tuple(warnings), pairs=args.method == "dpo",
                   max_eval_blocks=args.max_eval_blocks)


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
    from slmchat.engine.finetune.rundir import ARGS, new_run_dir, write_status
    from slmchat.engine.fsutil import write_json_atomic

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


