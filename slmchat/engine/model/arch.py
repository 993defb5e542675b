"""Which architecture a config describes, and whether it is a plain Llama.

"Plain Llama" (Llama attention and MLP, SiLU, no biases, default RoPE) is what the lean
decode path runs exactly and what the GGUF writer exports. One definition here, read
from a transformers config, a config.json namespace, or a config.json dict.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any


def _ns(config: Any) -> Any:
    return SimpleNamespace(**config) if isinstance(config, dict) else config


def rope_theta(config: Any) -> float:
    """RoPE base. transformers 5 keeps it under ``rope_parameters``; older config.json
    files have it at the top level. The nested value wins when both are present."""
    config = _ns(config)
    params = getattr(config, "rope_parameters", None) or {}
    theta = params.get("rope_theta") if isinstance(params, dict) else None
    return float(theta or getattr(config, "rope_theta", None) or 10000.0)


def plain_llama_problem(config: Any) -> str | None:
    """None for a plain Llama config; otherwise why it is not one (one line)."""
    if config is None:
        return "no config"
    config = _ns(config)
    arch = (getattr(config, "architectures", None) or [""])[0]
    model_type = getattr(config, "model_type", None)
    if model_type != "llama" or arch not in ("LlamaForCausalLM", ""):
        return f"a {arch or model_type or 'unknown'} model, not a plain Llama"
    for key in ("rope_scaling", "rope_parameters"):
        rope = getattr(config, key, None) or {}
        kind = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else None
        if kind not in ("default", None):
            return f"rope scaling {kind!r} is not supported"
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        return "Llama with biases is not supported"
    act = getattr(config, "hidden_act", "silu")
    if act != "silu":
        return f"activation {act!r} is not supported"
    return None


def is_plain_llama(config: Any) -> bool:
    return plain_llama_problem(config) is None
