"""Helpers for model-panel tests: LoRA adapters, truncated copies, fake HF cache layouts."""

from __future__ import annotations

import shutil
from pathlib import Path


def make_lora(base_dir: Path, out: Path, seed: int = 0, r: int = 4) -> Path:
    """A LoRA adapter on ``base_dir`` with random (non-zero) B matrices."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(str(base_dir))
    config = LoraConfig(r=r, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                        init_lora_weights=False)
    peft_model = get_peft_model(base, config)
    peft_model.save_pretrained(str(out))
    return out


def truncated_copy(src: Path, out: Path, keep: float = 0.5) -> Path:
    shutil.copytree(src, out)
    weights = out / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: int(len(data) * keep)])
    return out


def fake_hf_cache(cache: Path, repo_id: str, src: Path, revision: str = "0123456789abcdef") -> Path:
    """Lay ``src`` out like huggingface_hub does: blobs + a snapshot of symlinks."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    blobs = repo / "blobs"
    snap = repo / "snapshots" / revision
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    for i, f in enumerate(sorted(src.iterdir())):
        blob = blobs / f"blob{i}"
        shutil.copy(f, blob)
        (snap / f.name).symlink_to(blob)
    return snap
