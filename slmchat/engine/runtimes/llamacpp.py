"""The llamacpp runtime: GGUF files on llama.cpp (llama-cpp-python), memory-mapped in
place: no conversion, no copy, no torch import. Ollama blobs, LM Studio and llama.cpp
cache files and GPT4All models are GGUF files too, so every store model runs here.

``auto`` picks it for every GGUF file on the CPU (the other runtimes dequantize GGUF to
fp32: a tenth of the speed at three times the memory, see the README's runtime table),
except where transformers is asked for explicitly (bitsandbytes, cpu-int8, a dtype,
``runner='hf'``) or a PEFT LoRA adapter rides on the file: llama.cpp takes LoRA adapters
as GGUF files only, so that case says so in one warning line and runs on transformers.
The model and tokenizer adapters are model/llamacpp.py; the token step is
generation/backends/llamacpp.py.
"""

from __future__ import annotations

import time
from pathlib import Path

from slmchat.engine.devices import BusyCores, onnx_thread_count
from slmchat.engine.generation.backends.llamacpp import LlamaCppBackend
from slmchat.engine.model import gguf_copy
from slmchat.engine.model import llamacpp as gguf_model
from slmchat.engine.model.discovery import ModelEntry, inspect_folder, inspect_gguf
from slmchat.engine.model.files import fingerprint
from slmchat.engine.model.spec import LoadedModel, ModelInfo, ModelSpec, Progress
from slmchat.engine.runtimes.base import Source, reference_asked
from slmchat.errors import ModelLoadError

# The KV cache is allocated for this many tokens (or the model's trained context when
# smaller): 4,096 covers the chats people have on small models at a fraction of the
# memory of a 32k context (a 1.7B model: ~0.8 GB of f16 KV at 4k).
DEFAULT_CONTEXT = 4096

# general.file_type -> the quantization llama.cpp reports (llama.h LLAMA_FTYPE_*).
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
              10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S",
              15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 32: "BF16"}


class LlamaCppRuntime:
    name = "llamacpp"
    tag = "llama.cpp"
    interleaves = True  # one context per side, cheap steps: token by token keeps pace
    scores_sequences = False  # logits_all off: last-token logits only
    uses_torch = False
    # A batch returns logits at every drafted position (--speculative lookup works), but
    # llama.cpp's batched kernels round differently from its one-token steps (up to ~0.4
    # in a logit on the default Q4_1 file), so a verified reply can leave the plain one
    # at a near-tie: auto keeps to plain decoding here (README: speculative decoding).
    shares_weights = False  # one KV sequence per context: a companion loads its own

    def unavailable(self) -> str | None:
        return gguf_model.unavailable()

    def speculates(self, lm: LoadedModel) -> bool:
        return False

    def blocker(self, spec: ModelSpec, source: Source) -> str | None:
        if source.kind in ("hf", "default"):
            reason = gguf_copy.unsupported_reason(source.path)
            if reason:
                return reason
        elif source.kind != "gguf":
            return "it runs GGUF files and plain Llama or Qwen2 checkpoint folders (through a GGUF copy)"
        if spec.quant != "none":
            return f"--quant {spec.quant} runs on transformers (the GGUF file is quantized already)"
        if spec.adapter:
            return "llama.cpp takes LoRA adapters as GGUF files only; this PEFT adapter runs on " \
                   "transformers (the GGUF dequantized)"
        device = (spec.device or "auto").lower()
        if device not in ("auto", "cpu"):
            return f"this build of llama.cpp runs on the CPU (device {device} asked)"
        return self.unavailable()

    def auto_blocker(self, spec: ModelSpec, source: Source) -> str | None:
        if source.kind in ("hf", "default"):
            entry = inspect_folder(source.path, "file")
            params = entry.n_params if entry is not None else 0
            if params < gguf_copy.LARGE_PARAMS:
                return f"{params / 1e6:.0f}M parameters: below {gguf_copy.LARGE_PARAMS / 1e9:.0f}B " \
                       "the onnx int8 copy is chosen (closer to fp32)"
        return reference_asked(spec)

    def skip_note(self, spec: ModelSpec, source: Source) -> str | None:
        """A GGUF file that will run dequantized on transformers says why."""
        if source.kind != "gguf" or self.auto_blocker(spec, source) or spec.quant != "none":
            return None
        missing = self.unavailable()
        if missing:
            return f"{missing}; the GGUF file runs dequantized on transformers (slower)"
        if spec.adapter:
            return ("llama.cpp takes LoRA adapters as GGUF files only; this PEFT adapter and "
                    "its GGUF base run dequantized on transformers (slower)")
        return None

    def load(self, spec: ModelSpec, source: Source, name: str, progress: Progress | None,
             warnings: list[str], lite: bool) -> LoadedModel:
        start = time.perf_counter()
        path = source.path
        copy_fp = ""
        if source.kind != "gguf":  # a checkpoint folder: its GGUF copy, converted once
            path = gguf_copy.ensure_copy(name, source.path, progress)
            copy_fp = fingerprint([path])
        entry = _check_file(path)
        threads = onnx_thread_count(BusyCores())
        n_ctx = min(DEFAULT_CONTEXT, entry.context_length or DEFAULT_CONTEXT)
        try:
            model = gguf_model.LlamaCppModel(path, n_ctx, threads)
        except ModelLoadError as exc:
            raise ModelLoadError(f"llama.cpp cannot load {path.name} (architecture "
                                 f"{entry.architecture!r}: one this llama.cpp does not know, "
                                 "or a damaged file)") from exc
        tokenizer = gguf_model.LlamaCppTokenizer(model)
        meta = model.metadata
        try:
            file_type = FILE_TYPES.get(int(meta.get("general.file_type", "-1")), "")
        except ValueError:
            file_type = ""
        info = ModelInfo(
            name=name, path=str(source.path), kind=source.kind,
            architecture=meta.get("general.architecture", "?"), n_params=model.n_params,
            footprint_bytes=model.size_bytes, load_time_s=time.perf_counter() - start,
            context_length=model.context_length, has_chat_template=bool(tokenizer.chat_template),
            dtype=file_type or "gguf", device="cpu", quant="none", adapter=None,
            fingerprint=fingerprint(sorted(source.path.glob("*.safetensors"))) if copy_fp
            else fingerprint([path]), warnings=tuple(warnings), runtime=self.name,
            runtime_tag=self.tag, runtime_copy=copy_fp,
        )
        return LoadedModel(spec=spec, model=model, tokenizer=tokenizer, info=info,
                           extra={"gguf_file_type": file_type})

    def backend(self, lm: LoadedModel) -> LlamaCppBackend:
        return LlamaCppBackend(lm.model)

    def fit_threads(self, lm: LoadedModel, busy: BusyCores, training: bool) -> None:
        # llama.cpp's threads spin-wait too (0.75-2 tok/s on a 1.7B model with 2 threads
        # beside other work): the free cores, checked per reply (a change is cheap here).
        lm.model.set_threads(onnx_thread_count(busy, training=training,
                                                   current=lm.model.threads))

    def after_empty_reply(self, lm: LoadedModel) -> str | None:
        return None  # the GGUF file was checked at load (_check_file)


def _check_file(path: Path) -> ModelEntry:
    """One line for what llama.cpp would only call "Failed to load model": a truncated
    or damaged file, a vision projector, a split file."""
    entry = inspect_gguf(path, "file")
    if entry.problem:
        problem = entry.problem
        if problem.startswith(("unreadable GGUF", "truncated")):
            problem = "the GGUF file is truncated or damaged"
        raise ModelLoadError(f"cannot load {path}: {problem}")
    return entry


RUNTIME = LlamaCppRuntime()
