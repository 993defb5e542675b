"""Export: merge a LoRA adapter into its base, save safetensors + tokenizer + chat template
+ model card, and/or write a GGUF file (see gguf_export.py) that llama.cpp can run.

Every output goes through a temp folder/file renamed on success (engine/fsutil.py); a GGUF is
verified against the source model before it is renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmchat.engine.fsutil import atomic_dir, atomic_file, check_target, dir_size
from slmchat.engine.tools.gguf_writer import (
    MIN_TOP1,
    GGUFCheck,
    check_exportable,
    verify_gguf,
    write_gguf,
)
from slmchat.errors import InvalidParameterError

Progress = Callable[[str, float], None]


def _noop(_msg: str, _frac: float) -> None:
    return None


@dataclass(frozen=True)
class ExportResult:
    out: Path | None
    gguf: Path | None
    merged: bool
    out_bytes: int
    gguf_bytes: int
    check: GGUFCheck | None
    seconds: float


def run_metadata(adapter: Path) -> dict[str, Any]:
    """Provenance a fine-tune run left next to its adapter: data hash, metrics, base.

    The run format belongs to the fine-tune module; read any JSON in the adapter folder
    and its parent and keep the keys a model card needs, without depending on names.
    """
    found: dict[str, Any] = {}
    for folder in (adapter, adapter.parent):
        for path in sorted(folder.glob("*.json")):
            if path.name in ("adapter_config.json", "tokenizer_config.json", "config.json",
                             "tokenizer.json", "special_tokens_map.json"):
                continue
            try:
                data = json.loads(path.read_text()[:1_000_000])
            except (OSError, json.JSONDecodeError, UnicodeDecodeError):
                continue
            if not isinstance(data, dict):
                continue
            for key, value in data.items():
                low = key.lower()
                if ("hash" in low or "sha" in low or "metric" in low or "loss" in low
                        or "perplexity" in low or low in ("data", "data_path", "base_model")):
                    found.setdefault(key, value)
    return found


def _adapter_hash(adapter: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(adapter.glob("*.safetensors")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def export_card(info: Any, adapter: Path | None, check: GGUFCheck | None = None) -> str:
    lines = [f"# {info.name}", "", "Exported by slmchat.", "",
             f"- architecture: {info.architecture}",
             f"- parameters: {info.n_params:,}",
             f"- base model: `{info.path}`"]
    if adapter is not None:
        lines.append(f"- merged LoRA adapter: `{adapter}` (weights sha256 {_adapter_hash(adapter)})")
        meta = run_metadata(adapter)
        for key, value in meta.items():
            text = json.dumps(value) if not isinstance(value, str) else value
            lines.append(f"- {key}: {text[:300]}")
        if not meta:
            lines.append("- training data hash / metrics: not recorded next to the adapter")
    lines.append(f"- chat template: {'yes' if info.has_chat_template else 'no'}")
    if check is not None:
        lines.append(f"- GGUF {check.line}")
    lines += ["", "Load with `AutoModelForCausalLM.from_pretrained(THIS_FOLDER)` or "
              "`slmchat chat --model THIS_FOLDER`.", ""]
    return "\n".join(lines)


def load_for_export(spec: Any) -> Any:
    """Load ``spec`` in float32 on the CPU; quantized sources are refused."""
    from slmchat.engine.model.loader import load

    if spec.quant != "none":
        raise InvalidParameterError("export works on unquantized weights (drop --quant)")
    lm = load(spec.with_(dtype="fp32", device="cpu", quant="none"))
    if lm.info.quant != "none":
        raise InvalidParameterError(
            f"{spec.path} is a {lm.info.quant} checkpoint; export the unquantized model instead")
    return lm


def export_model(
    spec: Any, *, out: Path | None = None, merge_adapter: bool = False,
    gguf: Path | None = None, gguf_type: str = "f16", verify: bool = True,
    overwrite: bool = False, progress: Progress = _noop,
) -> ExportResult:
    """Export ``spec`` as a safetensors folder (``out``) and/or a GGUF file."""
    start = time.perf_counter()
    if out is None and gguf is None:
        raise InvalidParameterError("nothing to do: give --out DIR and/or --gguf FILE")
    if gguf is not None and gguf.suffix.lower() != ".gguf":
        raise InvalidParameterError(f"GGUF file name must end with .gguf: {gguf}")
    if out is not None:
        check_target(out.expanduser().resolve(), overwrite)
    if gguf is not None:
        g = gguf.expanduser().resolve()
        if g.exists() and not overwrite:
            raise InvalidParameterError(f"output exists: {g} (use --overwrite)")
        check_target(g, overwrite=True)
    progress("loading", 0.05)
    lm = load_for_export(spec)
    model, info = lm.model, lm.info
    adapter = Path(info.adapter) if info.adapter else None
    merged = False
    if adapter is not None:
        if not merge_adapter:
            raise InvalidParameterError("the model has a LoRA adapter: pass --merge-adapter "
                                        "to merge it into the base weights")
        progress("merging adapter", 0.2)
        model = model.merge_and_unload()
        merged = True
    if gguf is not None:
        check_exportable(model.config)  # fail before writing the folder
    out_final: Path | None = None
    if out is not None:
        progress("saving safetensors", 0.3)
        with atomic_dir(out, overwrite) as tmp:
            model.save_pretrained(str(tmp))
            lm.tokenizer.save_pretrained(str(tmp))
            (tmp / "README.md").write_text(export_card(info, adapter))
        out_final = out.expanduser().resolve()
    gguf_final: Path | None = None
    check: GGUFCheck | None = None
    if gguf is not None:
        progress("writing GGUF", 0.5)
        with atomic_file(gguf, overwrite) as tmp_file:
            write_gguf(model, lm.tokenizer, tmp_file, gguf_type, name=info.name,
                       progress=lambda f: progress("writing GGUF", 0.5 + 0.3 * f))
            if verify:
                progress("verifying GGUF", 0.85)
                check = verify_gguf(model, lm.tokenizer, tmp_file, min_top1=MIN_TOP1[gguf_type])
        gguf_final = gguf.expanduser().resolve()
        if out_final is not None and check is not None:
            (out_final / "README.md").write_text(export_card(info, adapter, check))
    progress("done", 1.0)
    return ExportResult(
        out=out_final, gguf=gguf_final, merged=merged,
        out_bytes=dir_size(out_final) if out_final else 0,
        gguf_bytes=gguf_final.stat().st_size if gguf_final else 0,
        check=check, seconds=time.perf_counter() - start,
    )
