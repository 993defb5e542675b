"""Step-numbered training checkpoints, written atomically and free of pickle.

A checkpoint is a folder ``checkpoints/step-00000040/`` holding

* ``weights.safetensors``: the trainable parameters only (LoRA matrices, or all weights
  for a full fine-tune);
* ``optimizer.safetensors``: the optimizer's per-parameter tensors and the torch RNG;
* ``state.json``: the sidecar: step, epoch, optimizer hyper-parameters, schedule state,
  the Python RNG, and the metrics so far.

It is written to a hidden temp folder and renamed into place, so a crash or a full disk
never leaves a half checkpoint that a resume would trust (only folders with state.json
and the final name count, see ``runs.checkpoints``).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

from slmchat.engine.finetune.rundir import CHECKPOINTS, checkpoints
from slmchat.engine.fsutil import atomic_dir, write_text_atomic


def trainable_state(model: Any) -> dict[str, Any]:
    return {
        name: p.detach().to("cpu").contiguous()
        for name, p in model.named_parameters() if p.requires_grad
    }


def _split_optimizer(optimizer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Optimizer state -> (tensors for safetensors, JSON-able rest)."""
    import torch

    sd = optimizer.state_dict()
    tensors: dict[str, Any] = {}
    scalars: dict[str, Any] = {}
    for idx, pstate in sd["state"].items():
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{idx}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def save_checkpoint(
    run_dir: Path, step: int, model: Any, optimizer: Any, state: dict[str, Any], keep: int = 2
) -> Path:
    """Write checkpoint ``step`` atomically and prune to the newest ``keep``."""
    import torch
    from safetensors.torch import save_file

    root = run_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    for stale in root.glob(".step-*.tmp-*"):  # left by a killed job; never a checkpoint
        shutil.rmtree(stale, ignore_errors=True)
    with atomic_dir(final, overwrite=True, durable=True) as tmp:
        save_file(trainable_state(model), str(tmp / "weights.safetensors"))
        opt_tensors, opt_rest = _split_optimizer(optimizer)
        opt_tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            for i, rng in enumerate(torch.cuda.get_rng_state_all()):
                opt_tensors[f"rng.cuda.{i}"] = rng
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        py_state = random.getstate()
        sidecar = {
            **state, "step": step, "optimizer": opt_rest,
            "python_rng": [py_state[0], list(py_state[1]), py_state[2]],
        }
        write_text_atomic(tmp / "state.json", json.dumps(sidecar, indent=1, default=float))
    for _, old in checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, model: Any, optimizer: Any) -> dict[str, Any]:
    """Restore weights, optimizer and RNG from ``path``; returns the sidecar dict."""
    import torch
    from safetensors.torch import load_file

    state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    weights = load_file(str(path / "weights.safetensors"))
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in weights]
    unknown = [n for n in weights if n not in params]
    if missing or unknown:
        raise ValueError(f"checkpoint {path} does not match the model "
                         f"(missing {missing[:3]}, unexpected {unknown[:3]})")
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor.to(params[name].device, params[name].dtype))
    opt = load_file(str(path / "optimizer.safetensors"))
    sd: dict[str, Any] = {"state": {}, "param_groups": state["optimizer"]["param_groups"]}
    for key, tensor in opt.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            sd["state"].setdefault(int(idx), {})[name] = tensor
    for key, value in state["optimizer"]["scalars"].items():
        idx, name = key.split(".", 1)
        sd["state"].setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict(sd)
    torch.set_rng_state(opt["rng.torch"])
    if torch.cuda.is_available():
        cuda = [opt[k] for k in sorted(k for k in opt if k.startswith("rng.cuda."))]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = state["python_rng"]
    random.setstate((version, tuple(internal), gauss))
    return dict(state)


# --- the best evaluated weights (early stopping keeps them as the result) ---------------

BEST = "best"
BEST_FILE = "best-weights.safetensors"  # not a checkpoint's weights.safetensors


def save_best(run_dir: Path, step: int, model: Any, eval_loss: float) -> Path:
    """Keep the trainable weights of ``step`` (the lowest held-out loss so far) in
    ``best/step-N``; older best folders are removed once the new one is complete."""
    from safetensors.torch import save_file

    root = run_dir / BEST
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    with atomic_dir(final, overwrite=True, durable=True) as tmp:
        save_file(trainable_state(model), str(tmp / BEST_FILE))
        write_text_atomic(tmp / "state.json", json.dumps({"step": step, "eval_loss": eval_loss}))
    for old in root.glob("step-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def best_path(run_dir: Path, step: int) -> Path | None:
    path = run_dir / BEST / f"step-{step:08d}"
    return path if (path / "state.json").is_file() else None


def load_best(run_dir: Path, step: int, model: Any) -> bool:
    """Load the kept best weights of ``step`` into ``model``; False if they are missing."""
    import torch
    from safetensors.torch import load_file

    path = best_path(run_dir, step)
    if path is None:
        return False
    weights = load_file(str(path / BEST_FILE))
    params = dict(model.named_parameters())
    if any(name not in params for name in weights):
        return False
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor.to(params[name].device, params[name].dtype))
    return True
