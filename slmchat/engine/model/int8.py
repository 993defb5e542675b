"""The cpu-int8 codec: quantize a model's Linear layers, save and load the result.

CPU int8 uses PyTorch's dynamic quantization of ``nn.Linear`` (``torch.ao.quantization.
quantize_dynamic``, int8 weights with per-output-channel scales, activations quantized
on the fly). It is the only int8 path that is faster than fp32 for decoding on x86 CPUs
with torch 2.13: torchao 0.18's ``Int8WeightOnlyConfig`` / ``Int8DynamicActivation
Int8WeightConfig`` were measured at ~1.2-1.5 tok/s on the default model (its CPU kernels
are unoptimised), bitsandbytes at 0.7 (8-bit) and 1.6 (4-bit NF4) tok/s.

Saved cpu-int8 format (a folder that ``load()`` reads back):

* ``config.json`` with ``quantization_config = {"quant_method": "slmchat-cpu-int8", ...}``
* ``model.cpu-int8.safetensors``: every quantized Linear ``X`` as ``X.qweight`` (int8,
  [out, in]), ``X.qscale`` (float32, [out]) and ``X.bias``; all other tensors as float.
* tokenizer files and chat template, plus a README with the recipe below.

Plain transformers cannot read it (there is no transformers integration for torch's
dynamic quantization). The weights file is deliberately not named ``model.safetensors``
so ``from_pretrained`` fails loudly instead of loading random weights. To use it without
slmchat: ``w = qweight.float() * qscale[:, None]`` gives the float weight of each Linear.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from slmchat.engine.model.files import CPU_INT8_METHOD, check_safetensors
from slmchat.errors import ModelLoadError

CPU_INT8_WEIGHTS = "model.cpu-int8.safetensors"


@contextmanager
def _quiet() -> Iterator[None]:
    # torch.ao prints deprecation warnings (the API moved to torchao, whose CPU kernels
    # are far slower here); they would spill into the TUI.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _dynamic_linear_cls() -> Any:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return DynamicLinear


# Linear layers kept in float: the MLP output projection sees the large activation
# outliers of these models, and torch's dynamic int8 quantizes activations per tensor
# (7-bit on x86). Measured on the default model, 512 tokens: fp32 ppl 20.1; every
# Linear int8 62.5; all but down_proj 26.0; all but down_proj and lm_head 24.3.
CPU_INT8_SKIP: tuple[str, ...] = ("down_proj",)


def apply_cpu_int8(model: Any, skip: tuple[str, ...] = CPU_INT8_SKIP) -> Any:
    """Quantize the nn.Linear layers of ``model`` to int8 (per-channel), in place."""
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    if any(isinstance(m, _dynamic_linear_cls()) for m in model.modules()):
        return model  # already int8 (a saved cpu-int8 checkpoint)
    names = {n for n, m in model.named_modules()
             if isinstance(m, torch.nn.Linear) and not n.endswith(skip)}
    with _quiet(), torch.no_grad():
        model = model.float()
        quantize_dynamic(model, dict.fromkeys(names, per_channel_dynamic_qconfig),
                         dtype=torch.qint8, inplace=True)
    model.config.slmchat_quant = "cpu-int8"
    return model


def save_cpu_int8(model: Any, folder: Path) -> None:
    """Write an ``apply_cpu_int8`` model's weights + config into ``folder``."""
    import torch
    from safetensors.torch import save_file

    dyn = _dynamic_linear_cls()
    tensors: dict[str, Any] = {}
    quantized: set[str] = set()
    with _quiet():
        for name, mod in model.named_modules():
            if isinstance(mod, dyn):
                w, b = mod._weight_bias()
                tensors[f"{name}.qweight"] = w.int_repr().contiguous()
                tensors[f"{name}.qscale"] = w.q_per_channel_scales().float().contiguous()
                if b is not None:
                    tensors[f"{name}.bias"] = b.detach().float().contiguous()
                quantized.add(name)
    for key, value in model.state_dict().items():
        owner = key.rsplit(".", 1)[0]
        if owner in quantized or owner.rsplit(".", 1)[0] in quantized:
            continue  # the packed params of a quantized Linear
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            tensors.setdefault(key, value.detach().contiguous())
    save_file(tensors, str(folder / CPU_INT8_WEIGHTS), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("slmchat_quant", None)
    config["quantization_config"] = {
        "quant_method": CPU_INT8_METHOD, "bits": 8, "scheme": "per-channel symmetric int8",
        "modules": sorted(quantized), "engine": "torch.ao.quantization.quantize_dynamic",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(str(folder))


def load_cpu_int8(folder: Path) -> Any:
    """Rebuild a saved cpu-int8 model exactly (same int8 values and scales)."""
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM

    weights = folder / CPU_INT8_WEIGHTS
    if not weights.is_file():
        raise ModelLoadError(f"cpu-int8 checkpoint {folder} has no {CPU_INT8_WEIGHTS}")
    check_safetensors([weights])
    config = AutoConfig.from_pretrained(str(folder), local_files_only=True,
                                        trust_remote_code=False)
    modules = list(config.quantization_config.get("modules", []))
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    dyn = _dynamic_linear_cls()
    with safe_open(str(weights), framework="pt") as fh:
        keys = set(fh.keys())
        plain = {k: fh.get_tensor(k) for k in keys
                 if not k.endswith((".qweight", ".qscale"))
                 and k.rsplit(".", 1)[0] not in modules}
        missing, unexpected = model.load_state_dict(plain, strict=False)
        with _quiet(), torch.no_grad():
            for name in modules:
                parent_name, _, attr = name.rpartition(".")
                parent = model.get_submodule(parent_name) if parent_name else model
                qw = fh.get_tensor(f"{name}.qweight")
                scale = fh.get_tensor(f"{name}.qscale").double()
                bias_key = f"{name}.bias"
                bias = fh.get_tensor(bias_key) if bias_key in keys else None
                q = torch._make_per_channel_quantized_tensor(
                    qw, scale, torch.zeros_like(scale, dtype=torch.long), 0)
                lin = dyn(qw.shape[1], qw.shape[0], bias_=bias is not None, dtype=torch.qint8)
                lin.set_weight_bias(q, bias)
                setattr(parent, attr, lin)
    missing = [k for k in missing if k.rsplit(".", 1)[0] not in modules]
    if missing or unexpected:
        raise ModelLoadError(f"cpu-int8 checkpoint {folder} does not match its config "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.config.slmchat_quant = "cpu-int8"
    return model.eval()


