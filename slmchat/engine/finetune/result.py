"""Writing a fine-tune result: a LoRA adapter or a full model, in Hugging Face format.

The folder is built under a hidden temp name and renamed into place only when complete,
so a crash or a full disk never leaves a half-written folder that looks like a result.
A LoRA adapter records its base by an absolute local path, so ``--model OUT`` loads
offline; ``slmchat-train.json`` and README.md (the model card) record base, data hash
and metrics.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from slmchat.engine.finetune.args import TrainArgs
from slmchat.engine.fsutil import atomic_dir


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-" if value is None else str(value)


def training_card(args: TrainArgs, base: str, data: dict[str, Any],
               metrics: dict[str, Any]) -> str:
    lora = args.method != "full"
    tags = ["slmchat", "fine-tuned", args.method]
    lines = [
        "---",
        f"base_model: {json.dumps(base)}",
        f"library_name: {'peft' if lora else 'transformers'}",
        "tags:", *[f"- {t}" for t in tags],
        "---",
        "",
        f"# {Path(args.out or 'model').name}",
        "",
        f"Fine-tuned with slmchat ({args.method}) on a local text file, fully offline.",
        "",
        f"- base model: `{base}`",
        f"- data: `{args.data}`",
        f"- data sha256: `{data.get('sha256', '')}`",
        f"- tokens: {data.get('tokens')} in {data.get('blocks')} blocks of "
        f"{data.get('block_size')} ({data.get('train_blocks')} train / "
        f"{data.get('eval_blocks')} held out: the end of the text, never trained on)",
        f"- written: {time.strftime('%Y-%m-%d %H:%M:%S')}",
        "",
        "| held-out metric | before | after |",
        "|---|---|---|",
        f"| loss | {_fmt(metrics.get('eval_loss_before'))} | "
        f"{_fmt(metrics.get('eval_loss_after'))} |",
        f"| perplexity | {_fmt(metrics.get('perplexity_before'))} | "
        f"{_fmt(metrics.get('perplexity_after'))} |",
        "",
        "## Training arguments",
        "",
        "```json",
        json.dumps(args.to_dict(), indent=2),
        "```",
        "",
        "Load it with `slmchat chat --model <this folder>` or "
        "`slmchat generate --model <this folder> PROMPT`.",
        "",
    ]
    return "\n".join(lines)


def save_output(model: Any, tokenizer: Any, args: TrainArgs, base: str, data: dict[str, Any],
                metrics: dict[str, Any], out_dir: Path) -> Path:
    """Save the adapter (LoRA/QLoRA) or the full model to ``out_dir`` atomically."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"output folder {out_dir} is not empty")
    with atomic_dir(out_dir, overwrite=True) as tmp:
        model.save_pretrained(str(tmp))
        if args.method != "full":
            _point_adapter_at(tmp, base)
        tokenizer.save_pretrained(str(tmp))
        (tmp / "README.md").write_text(training_card(args, base, data, metrics), encoding="utf-8")
        (tmp / "slmchat-train.json").write_text(json.dumps({
            "base_model": base, "method": args.method, "data": data, "metrics": metrics,
            "args": args.to_dict(),
        }, indent=2, default=str), encoding="utf-8")
    return out_dir


def _point_adapter_at(folder: Path, base: str) -> None:
    """Record the base as the absolute local path it was loaded from (peft would write the
    model's name_or_path, which for the default model is not a loadable folder)."""
    path = folder / "adapter_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    cfg["base_model_name_or_path"] = str(Path(base).expanduser().resolve())
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True), encoding="utf-8")
