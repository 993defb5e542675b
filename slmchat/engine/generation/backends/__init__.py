"""Decode backends: what runs the model's forward step for the decode loop (decode.py).

One small interface (base.py) with two implementations: ``transformers`` (any
architecture, GPU, bitsandbytes, adapters applied live; torch) and ``onnx`` (ONNX Runtime
GenAI on the CPU; numpy, no torch). The decode loop, stop strings, streaming and
provenance are shared; only the forward step, the KV state and the array type differ.
"""

from __future__ import annotations

from typing import Any

from slmchat.engine.generation.backends.base import Backend, ContextFull, DecodeState, Sampler


def backend_for(model: Any, runner_kind: str = "auto") -> Backend:
    """The backend that runs ``model``: ONNX for an ONNX copy, transformers otherwise."""
    if getattr(model, "slmchat_runtime", None) == "onnx":
        from slmchat.engine.generation.backends.onnx import OnnxBackend

        return OnnxBackend(model)
    from slmchat.engine.generation.backends.transformers import TransformersBackend

    return TransformersBackend(model, runner_kind)


__all__ = ["Backend", "ContextFull", "DecodeState", "Sampler", "backend_for"]
