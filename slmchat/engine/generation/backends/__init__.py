"""Decode backends: what runs a model's forward step for the decode loop (decode.py).

One small interface (base.py) with one implementation per runtime: ``transformers``
(any architecture, GPU, bitsandbytes, adapters applied live; torch), ``onnx`` (ONNX
Runtime GenAI on the CPU; numpy, no torch) and ``llamacpp`` (llama.cpp over a GGUF file;
numpy, no torch). The decode loop, sampling, stop strings, streaming and provenance are
shared; only the forward step, the KV state and the array type differ. Which backend a
loaded model gets is its runtime's answer (engine/runtimes).
"""

from __future__ import annotations

from slmchat.engine.generation.backends.base import Backend, ContextFull, DecodeState, Sampler

__all__ = ["Backend", "ContextFull", "DecodeState", "Sampler"]
