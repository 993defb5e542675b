"""GGUF copies of large checkpoint folders, for the llamacpp runtime.

Why: ONNX Runtime GenAI's builder loads the whole model in fp32 (peak RSS ~4x the bf16
checkpoint: 14.2 GB for a 1.7B model, so a 3B model would not convert on a 16 GB
laptop), while llama.cpp decodes its Q4_K_M format as fast as ONNX int4 and faster than
int8 (README "Runtimes"). So a checkpoint of at least ``LARGE_PARAMS`` parameters is
written once into the cache as a GGUF file, tensor by tensor straight from the memory-
mapped safetensors files (bf16/f16 bytes copied as they are, no fp32 model in memory),
then re-quantized to Q4_K_M by llama.cpp's own quantizer. Both steps run in a child
process (``python -m slmchat.engine.model.gguf_copy SRC OUT``), so the chat process never
holds the conversion's pages. Plain Llama and Qwen2 checkpoints (Qwen2.5's q/k/v biases,
tied or untied head), in the in-memory exporter's layout (model/gguf_layout.py: the same
tensor names, header and tokenizer metadata); other architectures are refused in one line.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from slmchat.engine.fsutil import atomic_dir, hold_in_use
from slmchat.engine.model.files import fingerprint, read_json
from slmchat.engine.model.gguf_layout import (
    export_problem,
    gguf_arch,
    permute,
    skip_tensor,
    tensor_name,
    write_llama_header,
)
from slmchat.engine.model.spec import Progress
from slmchat.errors import ModelLoadError, first_line

# From this size up, a checkpoint folder runs as a Q4_K_M GGUF copy on llama.cpp.
LARGE_PARAMS = 1_000_000_000
QUANT = "Q4_K_M"
RECIPE_VERSION = 1
MARKER = "slmchat-gguf.json"
# GGUF architectures streamed here: Llama (q/k permuted) and Qwen2 (biases, NEOX rotary).
STREAMED_ARCHS = ("llama", "qwen2")
REFUSAL = "the GGUF copy takes plain Llama and Qwen2 checkpoints; {}"
_ST_DTYPES = {"BF16": ("uint16", "BF16"), "F16": ("float16", "F16"), "F32": ("float32", "F32")}


def copies_dir() -> Path:
    from slmchat.paths import cache_dir

    return cache_dir() / "gguf"


def copy_path(name: str, source: Path) -> Path:
    key = hashlib.sha256(f"{RECIPE_VERSION}:{fingerprint(sorted(source.glob('*.safetensors')))}"
                         .encode()).hexdigest()[:12]
    return copies_dir() / f"{name}-{key}"


def unsupported_reason(source: Path) -> str | None:
    cfg = read_json(source / "config.json")
    problem = arch_problem(SimpleNamespace(**cfg) if isinstance(cfg, dict) else cfg)
    if problem:
        return REFUSAL.format(problem)
    if not (source / "tokenizer.json").is_file():
        return "the GGUF copy needs a tokenizer.json"
    return None


def arch_problem(config: Any) -> str | None:
    """None for a config the copy streams (STREAMED_ARCHS); otherwise why not (one line)."""
    problem = export_problem(config)
    if problem is None and gguf_arch(config)[0] not in STREAMED_ARCHS:
        problem = f"a {config.architectures[0]} model"
    return problem


def gguf_file(folder: Path) -> Path:
    return folder / f"model.{QUANT}.gguf"


def check_copy(folder: Path) -> str | None:
    """None when ``folder`` holds a whole copy (marker written last, sizes agree)."""
    try:
        meta = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return "no marker (an interrupted conversion)"
    path = gguf_file(folder)
    if not path.is_file() or path.stat().st_size != meta.get("size"):
        return "the GGUF file is missing or of the wrong size"
    return None


def ensure_copy(name: str, source: Path, progress: Progress | None = None) -> Path:
    """The Q4_K_M GGUF file of ``source``, converted now if it is not cached."""
    target = copy_path(name, source)
    if check_copy(target) is None:
        hold_in_use(target)
        return gguf_file(target)
    if progress is not None:
        progress(f"converting {name} to GGUF {QUANT} for llama.cpp (one time, about a minute)", 0.0)
    with atomic_dir(target, overwrite=True) as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "slmchat.engine.model.gguf_copy", str(source), str(tmp)],
            capture_output=True, text=True, timeout=3600,
            env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise ModelLoadError(f"cannot convert {source.name} to GGUF: {tail[:200]}")
    if progress is not None:
        progress(f"GGUF {QUANT} copy of {name} ready", 1.0)
    hold_in_use(target)
    return gguf_file(target)


# ---------------------------------------------------------------- the child process


def _tensors(source: Path) -> list[tuple[str, Any, str]]:
    """(name, memory-mapped array, GGUF type) of every tensor in ``source``'s safetensors
    files; nothing is read until the writer copies it out."""
    import numpy as np

    found = []
    for path in sorted(source.glob("*.safetensors")):
        with path.open("rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        for key, meta in header.items():
            if key == "__metadata__":
                continue
            if meta["dtype"] not in _ST_DTYPES:
                raise ModelLoadError(f"{path.name}: tensor {key} is {meta['dtype']}; the GGUF "
                                     "copy takes bf16, f16 or f32 weights")
            np_dtype, gguf_type = _ST_DTYPES[meta["dtype"]]
            start, end = meta["data_offsets"]
            arr = np.memmap(path, dtype=np_dtype, mode="r", offset=8 + n + start,
                            shape=tuple(meta["shape"]) or (1,))
            assert arr.nbytes == end - start
            found.append((key, arr, gguf_type))
    return found


def convert(source: Path, out: Path) -> Path:
    """Write ``out/model.bf16.gguf`` from ``source`` tensor by tensor, then quantize it
    to ``out/model.Q4_K_M.gguf`` with llama.cpp and remove the intermediate file."""
    import gguf
    import numpy as np
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(str(source), local_files_only=True, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True,
                                              trust_remote_code=False)
    problem = arch_problem(config)
    if problem:
        raise ModelLoadError(REFUSAL.format(problem))
    arch, permuted = gguf_arch(config)
    n_head = int(config.num_attention_heads)
    n_kv = int(getattr(config, "num_key_value_heads", None) or n_head)
    n_blocks = int(config.num_hidden_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    full = out / "model.bf16.gguf"
    writer = gguf.GGUFWriter(str(full), arch)
    # The header pads the token list to config.vocab_size (tokenizer_metadata), so a
    # Qwen2.5 embedding of 151,936 rows over a 151,665-token tokenizer loads as it is.
    write_llama_header(writer, config, tokenizer, int(gguf.LlamaFileType.MOSTLY_BF16), source.name)
    for key, arr, gguf_type in _tensors(source):
        name = tensor_name(key, arch, n_blocks)
        if name is None or (tied and name == "output.weight") or skip_tensor(arch, key):
            continue
        if arr.ndim == 1:  # norms, Qwen2's biases: small, kept in f32 as llama.cpp's converter
            data = (arr.astype(np.uint32) << 16).view(np.float32) if gguf_type == "BF16" \
                else arr.astype(np.float32)
            writer.add_tensor(name, np.ascontiguousarray(data))
            continue
        if permuted and name.endswith(("attn_q.weight", "attn_k.weight")):
            arr = np.ascontiguousarray(permute(arr, n_head if name.endswith("attn_q.weight") else n_kv))
        raw = getattr(gguf.GGMLQuantizationType, gguf_type)
        writer.add_tensor(name, arr, raw_shape=arr.shape, raw_dtype=raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    target = gguf_file(out)
    requantize(full, target, QUANT)
    full.unlink()
    (out / MARKER).write_text(json.dumps({"source": str(source), "quant": QUANT,
                                          "recipe": RECIPE_VERSION, "size": target.stat().st_size}))
    return target


# llama.cpp's file types by the names users ask for (llama.h LLAMA_FTYPE_MOSTLY_*).
REQUANT_TYPES = {"Q8_0": 7, "Q6_K": 18, "Q5_K_M": 17, "Q4_K_M": 15}


def requantize(src: Path, dst: Path, quant: str) -> None:
    """Re-quantize the GGUF ``src`` (f16/bf16/f32) to ``quant`` with llama.cpp's own
    quantizer (llama_model_quantize, as `llama-quantize` does): mixed per-tensor types
    for the _K_M kinds, fallbacks for tensors too narrow for K-quants."""
    import llama_cpp

    if quant not in REQUANT_TYPES:
        raise ModelLoadError(f"unknown GGUF quantization {quant!r} "
                             f"(choose from {', '.join(REQUANT_TYPES)})")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = REQUANT_TYPES[quant]
    params.nthread = os.cpu_count() or 1
    if llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params) != 0:
        raise ModelLoadError(f"llama.cpp's quantizer could not write {quant}")


def main(argv: list[str]) -> int:
    try:
        convert(Path(argv[0]), Path(argv[1]))
    except Exception as exc:
        print(f"{type(exc).__name__}: {first_line(exc, default='')}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
