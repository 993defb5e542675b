"""ModelSpec -> LoadedModel with transformers: the loader of the tools and of the
transformers runtime (engine/runtimes chooses a runtime for chat).

Supported sources (the kind is decided by what is on disk, never by the file name of a
Hub repo): the embedded default model ("default"), a Hugging Face checkpoint folder with
safetensors weights, a single ``.gguf`` file (dequantized by transformers), and a LoRA
adapter folder on top of its base. Quantization and adapters are explicit fields of the
spec (convention 9 in ARCHITECTURE.md).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from slmchat.engine.devices import resolve_device, resolve_dtype
from slmchat.engine.model.files import (
    adapter_base,
    check_safetensors,
    checkpoint_quant,
    fingerprint,
    has_python_files,
    is_bnb_checkpoint,
    is_cpu_int8_checkpoint,
    loadable_base,
    resolve_source,
    weight_files,
)
from slmchat.engine.model.naming import finetuned_name
from slmchat.engine.model.spec import (
    DTYPES,
    QUANTS,
    LoadedModel,
    ModelInfo,
    ModelSpec,
    Progress,
)
from slmchat.engine.offline import ensure_offline
from slmchat.errors import ModelLoadError, first_line


def _bnb_config(spec: ModelSpec, torch: Any) -> Any:
    from transformers import BitsAndBytesConfig

    if spec.quant == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=spec.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=spec.bnb_4bit_double_quant,
        bnb_4bit_compute_dtype=compute[spec.bnb_4bit_compute_dtype],
    )


def _load_hf(folder: Path, spec: ModelSpec, device: str, dtype: Any, warnings: list[str]) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    safe, pickled = weight_files(folder)
    if not safe and not pickled:
        raise ModelLoadError(f"no weights (*.safetensors) in {folder}")
    if not safe and pickled:
        if not spec.allow_pickle:
            raise ModelLoadError(
                f"{folder} has only pickle weights ({pickled[0].name}); pickle can run code, "
                "so it is refused. Pass --allow-pickle if you trust this folder."
            )
        warnings.append("pickle weights loaded with weights_only=True")
    check_safetensors(safe)
    from slmchat.engine.model.int8 import load_cpu_int8

    if is_cpu_int8_checkpoint(folder):  # saved by `slmchat quantize --method cpu-int8`
        if spec.quant in ("8bit", "4bit") or device != "cpu":
            raise ModelLoadError(f"{folder} is a cpu-int8 checkpoint: load it on the CPU "
                                 "without bitsandbytes quantization")
        return load_cpu_int8(folder)
    if has_python_files(folder):
        warnings.append("folder contains Python files; they are ignored (trust_remote_code off)")
    kwargs: dict[str, Any] = {
        "trust_remote_code": False,
        "local_files_only": True,
        "dtype": dtype,
        "use_safetensors": bool(safe),
    }
    if spec.quant in ("8bit", "4bit"):
        kwargs["quantization_config"] = _bnb_config(spec, torch)
        kwargs["device_map"] = {"": device}
    elif is_bnb_checkpoint(folder):
        kwargs["device_map"] = {"": device}
    model = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
    if "device_map" not in kwargs:
        model.to(device)  # type: ignore[arg-type]  # transformers' stub wraps .to oddly
    return model


def _load_tokenizer(folder: Path, gguf_file: str | None = None) -> Any:
    from transformers import AutoTokenizer

    kwargs: dict[str, Any] = {"trust_remote_code": False, "local_files_only": True}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    tok = AutoTokenizer.from_pretrained(str(folder), **kwargs)
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return tok


def _context_length(config: Any) -> int:
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "n_ctx"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


def load(spec: ModelSpec, lite: bool = False, progress: Progress | None = None) -> LoadedModel:
    """Load ``spec`` with transformers (the tools' loader: perplexity, quantize, export and
    training always get a transformers model; chat engines load through
    engine/runtimes, which may pick another runtime).

    Any failure becomes a ModelLoadError with a one-line message; nothing global is
    changed before the new model is fully loaded, so callers can keep the previous one.
    ``lite``: for generation only, load plain Llama checkpoints without transformers
    (engine/model/lite.py); ``model`` is then not a transformers model.
    """
    check_spec(spec)
    kind, path = resolve_source(spec)
    return load_transformers(spec, kind, path, lite=lite)


def check_spec(spec: ModelSpec) -> None:
    ensure_offline()
    if spec.dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype {spec.dtype!r} (choose from {', '.join(DTYPES)})")
    if spec.quant not in QUANTS:
        raise ModelLoadError(f"unknown quantization {spec.quant!r} (choose from {', '.join(QUANTS)})")


def load_transformers(spec: ModelSpec, kind: str, path: Path, lite: bool = False) -> LoadedModel:
    """Load an already resolved source (``kind``, ``path``) with transformers."""
    start = time.perf_counter()
    warnings: list[str] = []
    try:
        device = resolve_device(spec.device)
        dtype = resolve_dtype(spec.dtype, device)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from exc
    if spec.quant in ("8bit", "4bit"):
        _check_bnb_available()
    try:
        if lite:
            from slmchat.engine.model import lite as lite_mod

            if lite_mod.eligible(kind, path, spec):
                return lite_mod.load_lite(kind, path, spec, display_name(kind, path, spec))
        model, tokenizer, files, base_path = _load_kind(kind, path, spec, device, dtype, warnings)
        if spec.quant == "cpu-int8":
            from slmchat.engine.model.int8 import apply_cpu_int8

            if device != "cpu":
                raise ModelLoadError("cpu-int8 quantization runs on the CPU only (use --device cpu)")
            model = apply_cpu_int8(model)
    except ModelLoadError:
        raise
    except MemoryError as exc:
        raise ModelLoadError(f"out of memory while loading {path}") from exc
    except Exception as exc:  # transformers raises many types; keep one clear line
        msg = first_line(exc)
        if "out of memory" in msg.lower():
            raise ModelLoadError(f"out of memory while loading {path}: {msg}") from exc
        raise ModelLoadError(f"cannot load {path}: {type(exc).__name__}: {msg}") from exc
    model.eval()
    config = model.config
    info = ModelInfo(
        name=display_name(kind, path, spec),
        path=str(base_path),
        kind=kind,
        architecture=(getattr(config, "architectures", None) or [type(model).__name__])[0],
        n_params=sum(p.numel() for p in model.parameters()),
        footprint_bytes=_footprint(model),
        load_time_s=time.perf_counter() - start,
        context_length=_context_length(config),
        has_chat_template=bool(getattr(tokenizer, "chat_template", None)),
        dtype=_dtype_name(model, spec),
        device=device,
        quant=spec.quant if spec.quant != "none" else (
            checkpoint_quant(base_path) if base_path.is_dir() else "none"),
        adapter=str(Path(spec.adapter).expanduser()) if spec.adapter else (
            str(path) if kind == "adapter" else None
        ),
        fingerprint=fingerprint(files) if files else "",
        warnings=tuple(warnings),
    )
    return LoadedModel(spec=spec, model=model, tokenizer=tokenizer, info=info)


def _check_bnb_available() -> None:
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:
        raise ModelLoadError(f"bitsandbytes is not usable here: {exc}") from exc


def _load_kind(
    kind: str, path: Path, spec: ModelSpec, device: str, dtype: Any, warnings: list[str]
) -> tuple[Any, Any, list[Path], Path]:
    """Load weights + tokenizer for one source kind. Returns (model, tok, files, path)."""
    if kind == "gguf":
        from transformers import AutoModelForCausalLM

        if spec.quant in ("8bit", "4bit"):
            raise ModelLoadError("bitsandbytes quantization of a GGUF file is not supported; "
                                 "convert it first (slmchat export) or use --quant cpu-int8")
        model = AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=dtype,
            trust_remote_code=False, local_files_only=True,
        )
        model.to(device)  # type: ignore[arg-type]
        tok = _load_tokenizer(path.parent, gguf_file=path.name)
        model = _maybe_adapter(model, spec, warnings)
        return model, tok, [path], path
    if kind == "adapter":
        base_spec = replace(spec, path=loadable_base(adapter_base(path)), adapter=str(path))
        return _load_kind_with_adapter(base_spec, device, dtype, warnings)
    model = _load_hf(path, spec, device, dtype, warnings)
    tok = _load_tokenizer(path)
    model = _maybe_adapter(model, spec, warnings)
    safe, pickled = weight_files(path)
    return model, tok, safe or pickled, path


def _load_kind_with_adapter(
    spec: ModelSpec, device: str, dtype: Any, warnings: list[str]
) -> tuple[Any, Any, list[Path], Path]:
    kind, base_path = resolve_source(replace(spec, adapter=None))
    if kind == "adapter":
        raise ModelLoadError(f"adapter base {base_path} is itself an adapter")
    return _load_kind(kind, base_path, spec, device, dtype, warnings)


def _maybe_adapter(model: Any, spec: ModelSpec, warnings: list[str]) -> Any:
    if not spec.adapter:
        return model
    adapter = Path(spec.adapter).expanduser()
    if not (adapter / "adapter_config.json").is_file():
        raise ModelLoadError(f"not a LoRA adapter folder (no adapter_config.json): {adapter}")
    safe, _ = weight_files(adapter)
    if not safe:
        raise ModelLoadError(f"adapter {adapter} has no safetensors weights")
    check_safetensors(safe)
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ModelLoadError(
            f"adapter {adapter} does not fit this base model: {first_line(exc)[:200]}"
        ) from exc


def display_name(kind: str, path: Path, spec: ModelSpec) -> str:
    if kind == "default":
        return "SmolLM2-135M-Instruct"
    name = path.stem if kind == "gguf" else (finetuned_name(path) or path.name)
    if kind == "gguf" and path.suffix.lower() != ".gguf":  # an Ollama blob: its tag
        from slmchat.engine.model.toolstores import ollama_names_for

        name = next(iter(ollama_names_for(path)), path.name[:19])
    if spec.adapter:
        name = f"{name}+{Path(spec.adapter).name}"
    return name


def _footprint(model: Any) -> int:
    try:
        return int(model.get_memory_footprint())
    except Exception:
        return sum(p.numel() * p.element_size() for p in model.parameters())


def _dtype_name(model: Any, spec: ModelSpec) -> str:
    try:
        dt = next(model.parameters()).dtype
    except StopIteration:
        return spec.dtype
    return {"torch.float32": "fp32", "torch.bfloat16": "bf16", "torch.float16": "fp16"}.get(
        str(dt), str(dt).replace("torch.", "")
    )
