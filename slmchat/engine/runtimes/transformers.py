"""The transformers runtime: any architecture, GPUs, bitsandbytes, cpu-int8, live LoRA
adapters, the exact reference paths (``runner='hf'``, an explicit dtype), and the lean
Llama forward of the lite loader. The fallback every other runtime gives way to.

Loading is model/loader.py (shared with the tools: perplexity, quantize, export and
training always get a transformers model); the token step is
generation/backends/transformers.py.
"""

from __future__ import annotations

from slmchat.engine.devices import BusyCores, chat_threads
from slmchat.engine.generation.backends.transformers import TransformersBackend
from slmchat.engine.model.loader import load_transformers
from slmchat.engine.model.spec import LoadedModel, ModelSpec, Progress
from slmchat.engine.runtimes.base import Source


class TransformersRuntime:
    name = "transformers"
    tag = ""
    # Two torch replies: a thread per side with one torch thread each beat interleaving
    # 3.0-3.2 s to 6.1-6.9 s (benchmarks/bench_compare.py, 2 cores).
    interleaves = False
    scores_sequences = True
    uses_torch = True
    shares_weights = True

    def unavailable(self) -> str | None:
        return None  # torch and transformers are core dependencies

    def speculates(self, lm: LoadedModel) -> bool:
        return True  # a forward has logits at every position, the same as step by step

    def blocker(self, spec: ModelSpec, source: Source) -> str | None:
        if source.kind == "onnx":
            return "an ONNX copy runs on the onnx runtime only"
        return None

    def auto_blocker(self, spec: ModelSpec, source: Source) -> str | None:
        return None

    def skip_note(self, spec: ModelSpec, source: Source) -> str | None:
        return None

    def load(self, spec: ModelSpec, source: Source, name: str, progress: Progress | None,
             warnings: list[str], lite: bool) -> LoadedModel:
        lm = load_transformers(spec, source.kind, source.path, lite=lite)
        if warnings:
            lm.info = lm.info.__class__(**{**lm.info.as_dict(),
                                          "warnings": tuple(warnings) + lm.info.warnings})
        return lm

    def backend(self, lm: LoadedModel) -> TransformersBackend:
        return TransformersBackend(lm.model, lm.spec.runner)

    def fit_threads(self, lm: LoadedModel, busy: BusyCores, training: bool) -> None:
        if lm.info.device == "cpu":
            chat_threads(training=training)

    def after_empty_reply(self, lm: LoadedModel) -> str | None:
        return None  # the weights were checked at load; nothing converted to look at


RUNTIME = TransformersRuntime()
