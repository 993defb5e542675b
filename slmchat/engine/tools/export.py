"""Export: merge a LoRA adapter into its base, save safetensors + tokenizer + chat template
+ model card, and/or write a GGUF file (gguf_writer.py) that llama.cpp can run.

Every output goes through a temp folder/file renamed on success (engine/fsutil.py); a GGUF is
verified against the source model before it is renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmchat.engine.fsutil import atomic_dir, atomic_file, check_target, dir_size
from slmchat.engine.model.gguf_layout import check_exportable
from slmchat.engine.tools.gguf_writer import (
    MIN_TOP1,
    GGUFCheck,
    verify_gguf,
    write_gguf,
    write_gguf_lora,
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
    ollama: Path | None = None  # the manifest written for --ollama NAME
    lm_studio: Path | None = None  # the file written for --lm-studio
    modelfile: Path | None = None
    gguf_lora: Path | None = None  # the adapter as a GGUF LoRA (--gguf-lora)


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


@dataclass(frozen=True)
class StoreTargets:
    """Where a GGUF export also goes: an Ollama name, an LM Studio PUBLISHER/REPO."""

    ollama: str | None = None
    lm_studio: str | None = None

    def __bool__(self) -> bool:
        return self.ollama is not None or self.lm_studio is not None

    def check(self, overwrite: bool) -> None:
        """Refuse a bad name or a taken one before any work is done."""
        from slmchat.engine.model.toolstores import ollama_write_root
        from slmchat.engine.tools.toolstore_export import lm_studio_target, parse_ollama_name

        if self.ollama is not None:
            host, ns, model, tag = parse_ollama_name(self.ollama)
            manifest = ollama_write_root() / "manifests" / host / ns / model / tag
            if manifest.exists() and not overwrite:
                raise InvalidParameterError(f"Ollama already has a model named {self.ollama!r} "
                                            "(use --overwrite)")
        if self.lm_studio:
            lm_studio_target(Path("."), self.lm_studio, "x.gguf")


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-.") or "model"


def _store_file_name(name: str, gguf_type: str) -> str:
    """``smollm2-135m-instruct-Q4_K_M.gguf``: LM Studio shows the quant from the name."""
    return f"{_slug(name)}-{gguf_type.upper()}.gguf"


def ollama_extras(tokenizer: Any) -> Any:
    """TEMPLATE, stop strings and SYSTEM from the chat template (none without one: Ollama
    then sends the prompt as it is)."""
    from slmchat.engine.tools.ollama_template import measure, stop_strings
    from slmchat.engine.tools.toolstore_export import OllamaExtras

    if not getattr(tokenizer, "chat_template", None):
        eos = getattr(tokenizer, "eos_token", None)
        return OllamaExtras(stops=[eos] if isinstance(eos, str) and eos else [])
    shape = measure(tokenizer)
    return OllamaExtras(template=shape.go_template(), stops=stop_strings(shape, tokenizer),
                        system=shape.default_system)


def _write_stores(lm: Any, gguf: Path, gguf_type: str, stores: StoreTargets, overwrite: bool,
                  write_modelfile: bool, extras: Any) -> dict[str, Path]:
    """Register the verified ``gguf`` with Ollama / LM Studio (and a Modelfile beside it)."""
    from slmchat.engine.model.toolstores import lm_studio_write_root, ollama_write_root
    from slmchat.engine.tools import toolstore_export as ts

    written: dict[str, Path] = {}
    if stores.ollama is not None or write_modelfile:
        if write_modelfile:
            modelfile = gguf.with_suffix(".Modelfile")
            with atomic_file(modelfile, overwrite=True) as tmp:
                tmp.write_text(ts.modelfile_text(gguf, extras))
            written["modelfile"] = modelfile
        if stores.ollama is not None:
            from slmchat.engine.model.gguf_header import read_header

            header = read_header(gguf)
            written["ollama"] = ts.write_ollama(
                gguf, stores.ollama, extras, root=ollama_write_root(),
                family=str(header.meta.get("general.architecture", "llama")),
                n_params=int(header.n_params), file_type=gguf_type, overwrite=overwrite)
    if stores.lm_studio is not None:
        repo = stores.lm_studio or f"slmchat/{_slug(lm.info.name)}"
        target = ts.lm_studio_target(lm_studio_write_root(), repo,
                                     _store_file_name(lm.info.name, gguf_type))
        written["lm_studio"] = ts.write_lm_studio(gguf, target, overwrite)
    return written


def _write_checked_gguf(model: Any, lm: Any, gguf: Path, gguf_type: str, verify: bool,
                        overwrite: bool, progress: Progress) -> GGUFCheck | None:
    """Write the GGUF under a temp name, compare it with the source, rename it."""
    check: GGUFCheck | None = None
    progress("writing GGUF", 0.5)
    with atomic_file(gguf, overwrite) as tmp_file:
        write_gguf(model, lm.tokenizer, tmp_file, gguf_type, name=lm.info.name,
                   progress=lambda f: progress("writing GGUF", 0.5 + 0.3 * f))
        if verify:
            progress("verifying GGUF", 0.85)
            check = verify_gguf(model, lm.tokenizer, tmp_file, min_top1=MIN_TOP1[gguf_type])
    return check


@contextlib.contextmanager
def _scratch_dir(stores: StoreTargets) -> Iterator[Path]:
    from slmchat.engine.model.toolstores import lm_studio_write_root, ollama_write_root

    root = ollama_write_root() if stores.ollama is not None else lm_studio_write_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".slmchat-export-", dir=root))
    except OSError as exc:
        raise InvalidParameterError(f"cannot write to {root}: {exc.strerror or exc}") from exc
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def export_model(
    spec: Any, *, out: Path | None = None, merge_adapter: bool = False,
    gguf: Path | None = None, gguf_type: str = "f16", verify: bool = True,
    overwrite: bool = False, progress: Progress = _noop, stores: StoreTargets | None = None,
    modelfile: bool = False, gguf_lora: Path | None = None,
) -> ExportResult:
    """Export ``spec`` as a safetensors folder (``out``) and/or a GGUF file, which may
    also go into Ollama's and LM Studio's model folders (``stores``)."""
    start = time.perf_counter()
    stores = stores or StoreTargets()
    if modelfile and gguf is None:
        raise InvalidParameterError("--modelfile writes FILE.Modelfile beside --gguf FILE: "
                                    "give --gguf too")
    if out is None and gguf is None and not stores and gguf_lora is None:
        raise InvalidParameterError("nothing to do: give --out DIR, --gguf FILE, --ollama NAME, "
                                    "--lm-studio or --gguf-lora FILE")
    stores.check(overwrite)
    if gguf_lora is not None:
        if gguf_lora.suffix.lower() != ".gguf":
            raise InvalidParameterError(f"GGUF file name must end with .gguf: {gguf_lora}")
        if gguf_lora.expanduser().exists() and not overwrite:
            raise InvalidParameterError(f"output exists: {gguf_lora.expanduser().resolve()} "
                                        "(use --overwrite)")
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
    lora_final: Path | None = None
    if gguf_lora is not None:
        if adapter is None:
            raise InvalidParameterError("--gguf-lora writes a LoRA adapter: give an adapter "
                                        "folder (a fine-tune's RUN/model), not a full model")
        progress("writing the GGUF LoRA adapter", 0.15)
        with atomic_file(gguf_lora, overwrite) as tmp_file:
            write_gguf_lora(model, tmp_file, name=info.name)
        lora_final = gguf_lora.expanduser().resolve()
    needs_merge = out is not None or gguf is not None or bool(stores)
    if adapter is not None and needs_merge:
        if not merge_adapter:
            raise InvalidParameterError("the model has a LoRA adapter: pass --merge-adapter "
                                        "to merge it into the base weights")
        progress("merging adapter", 0.2)
        model = model.merge_and_unload()
        merged = True
    if gguf is not None or stores:
        check_exportable(model.config)  # fail before writing the folder
    # The chat template is measured before anything is written: one it cannot convert
    # stops the export here.
    extras = ollama_extras(lm.tokenizer) if stores.ollama is not None or modelfile else None
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
    written: dict[str, Path] = {}
    if gguf is not None:
        check = _write_checked_gguf(model, lm, gguf, gguf_type, verify, overwrite, progress)
        gguf_final = gguf.expanduser().resolve()
        if out_final is not None and check is not None:
            (out_final / "README.md").write_text(export_card(info, adapter, check))
        if stores or modelfile:
            progress("writing to model stores", 0.95)
            written = _write_stores(lm, gguf_final, gguf_type, stores, overwrite, modelfile,
                                   extras)
    elif stores:
        # No --gguf: the file is written next to the store (a hard link then costs nothing)
        # and only the store's copy stays.
        with _scratch_dir(stores) as scratch:
            tmp_gguf = scratch / "export.gguf"
            check = _write_checked_gguf(model, lm, tmp_gguf, gguf_type, verify, True, progress)
            progress("writing to model stores", 0.95)
            written = _write_stores(lm, tmp_gguf, gguf_type, stores, overwrite, False, extras)
    progress("done", 1.0)
    return ExportResult(
        out=out_final, gguf=gguf_final, merged=merged,
        out_bytes=dir_size(out_final) if out_final else 0,
        gguf_bytes=gguf_final.stat().st_size if gguf_final else 0,
        check=check, seconds=time.perf_counter() - start, ollama=written.get("ollama"),
        lm_studio=written.get("lm_studio"), modelfile=written.get("modelfile"),
        gguf_lora=lora_final,
    )
