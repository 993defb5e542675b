"""Find every local model slmchat can load, without loading any weights.

Sources: the embedded default model, fine-tune runs (any folder under ``runs_dir()``
with a config.json or adapter_config.json), ``Settings.model.dirs``, ``models_dir()``,
other tools' stores (Ollama, LM Studio, llama.cpp, GPT4All: toolstores.py), snapshots in
the local Hugging Face cache (read-only), and ``.gguf`` files. Facts come from
config.json, safetensors headers and GGUF metadata; nothing touches the network.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slmchat.engine.fsutil import dir_size
from slmchat.engine.model import remote
from slmchat.engine.model.arch import is_plain_llama
from slmchat.engine.model.files import gguf_damage, read_json
from slmchat.engine.model.toolstores import ToolModel, llama_cpp_models, ollama_models, tool_roots
from slmchat.errors import first_line

MAX_DEPTH = 4  # how deep to look for checkpoints inside a run or model folder
MAX_SCAN_FOLDERS = 5000  # per folder scanned: a settings entry like "/" stays quick
MAX_SCAN_SECONDS = 10.0
_PSEUDO_FS = {"/proc", "/sys", "/dev"}  # nothing to find there, and reads can block
_SKIP_DIRS = {".git", "__pycache__", "node_modules", ".cache", "blobs", "refs"}
TOOL_SOURCES = ("ollama", "lm-studio", "llama.cpp", "gpt4all")
_SPLIT_GGUF = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_QUANT_AUX = (".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map", ".SCB",
              ".weight_format", ".qscale")


@dataclass(frozen=True)
class ModelEntry:
    """One loadable model as discovered on disk."""

    name: str
    path: str  # what to put in ModelSpec.path ("default", a folder, a .gguf file)
    source: str  # default | run | settings | models | hf-cache | ollama | lm-studio | llama.cpp | gpt4all
    format: str  # safetensors | gguf | lora | bnb-8bit | bnb-4bit | cpu-int8 | onnx-int8 | pickle
    architecture: str = "?"
    n_params: int = 0
    size_bytes: int = 0
    has_chat_template: bool = False
    base: str | None = None  # adapters: the base model they were trained on
    context_length: int = 0
    vocab_size: int = 0
    hidden_size: int = 0
    n_layers: int = 0
    n_kv_heads: int = 0
    head_dim: int = 0
    dtype: str = ""
    problem: str | None = None  # e.g. "truncated weights": shown, loading will refuse
    plain_llama: bool = False  # model.arch.is_plain_llama: lean decode path, GGUF export
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def search_text(self) -> str:
        return " ".join((self.name, self.path, self.source, self.format,
                         self.architecture, self.base or "",
                         *self.extra.get("aliases", ()))).lower()

    @property
    def label(self) -> str:
        """The name with the tool it comes from, e.g. ``ollama: qwen2.5:0.5b``."""
        if self.source == remote.FORMAT:  # "lab: llama3.1:8b" (its name: "lab:llama3.1:8b")
            return remote.label(*self.name.split(":", 1))
        return f"{self.source}: {self.name}" if self.source in TOOL_SOURCES else self.name


def _safetensors_params(files: Iterable[Path], tied: bool) -> tuple[int, str | None]:
    """Parameter count from safetensors headers (quantization bookkeeping excluded)."""
    total = 0
    for path in files:
        try:
            with path.open("rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                if n <= 0 or n > 100_000_000:
                    return total, f"corrupt weights file {path.name}"
                header = json.loads(fh.read(n))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"),
                      default=0)
            if path.stat().st_size < 8 + n + end:
                return total, f"truncated weights file {path.name}"
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
            return total, f"corrupt weights file {path.name}"
        for key, meta in header.items():
            if key == "__metadata__" or ".quant_state." in key or key.endswith(_QUANT_AUX):
                continue
            if tied and key.startswith("lm_head."):
                continue
            numel = 1
            for dim in meta.get("shape", []):
                numel *= int(dim)
            if meta.get("dtype") == "U8" and f"{key}.absmax" in header:
                numel *= 2  # bitsandbytes 4-bit packs two weights per byte
            total += numel
    return total, None


def _has_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    return bool(read_json(folder / "tokenizer_config.json").get("chat_template"))


def inspect_folder(folder: Path, source: str, name: str | None = None) -> ModelEntry | None:
    """A ModelEntry for a checkpoint or adapter folder, or None if it is neither."""
    name = name or folder.name
    if (folder / "adapter_config.json").is_file():
        cfg = read_json(folder / "adapter_config.json")
        files = sorted(folder.glob("*.safetensors"))
        n, problem = _safetensors_params(files, tied=False)
        if not files:
            problem = "no adapter weights (*.safetensors)"
        return ModelEntry(
            name=name, path=str(folder), source=source, format="lora",
            architecture=f"LoRA r={cfg.get('r', '?')}", n_params=n,
            size_bytes=dir_size(folder), has_chat_template=_has_template(folder),
            base=cfg.get("base_model_name_or_path"), problem=problem,
        )
    if (folder / "genai_config.json").is_file():
        return _inspect_onnx(folder, source, name)
    if not (folder / "config.json").is_file():
        return None
    cfg = read_json(folder / "config.json")
    if not cfg:
        return ModelEntry(name=name, path=str(folder), source=source, format="safetensors",
                          size_bytes=dir_size(folder), problem="unreadable config.json")
    text = cfg.get("text_config") or cfg
    qc = cfg.get("quantization_config") or {}
    safe = sorted(folder.glob("*.safetensors"))
    fmt = "safetensors"
    if qc.get("quant_method") == "bitsandbytes":
        fmt = "bnb-8bit" if qc.get("load_in_8bit") else "bnb-4bit"
    elif qc.get("quant_method") == "slmchat-cpu-int8":
        fmt = "cpu-int8"
    tied = bool(text.get("tie_word_embeddings", cfg.get("tie_word_embeddings", False)))
    n, problem = _safetensors_params(safe, tied)
    if not safe:
        pickled = [p for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth")]
        fmt = "pickle" if pickled else fmt
        problem = "pickle weights only (needs --allow-pickle)" if pickled else "no weights"
    heads = int(text.get("num_attention_heads") or text.get("n_head") or 0)
    hidden = int(text.get("hidden_size") or text.get("n_embd") or 0)
    return ModelEntry(
        name=name, path=str(folder), source=source, format=fmt,
        architecture=(cfg.get("architectures") or [cfg.get("model_type", "?")])[0],
        n_params=n, size_bytes=dir_size(folder), has_chat_template=_has_template(folder),
        context_length=int(text.get("max_position_embeddings") or text.get("n_positions") or 0),
        vocab_size=int(text.get("vocab_size") or 0), hidden_size=hidden,
        n_layers=int(text.get("num_hidden_layers") or text.get("n_layer") or 0),
        n_kv_heads=int(text.get("num_key_value_heads") or heads),
        head_dim=int(text.get("head_dim") or (hidden // heads if heads else 0)),
        dtype=str(text.get("dtype") or text.get("torch_dtype") or ""), problem=problem,
        plain_llama=is_plain_llama(cfg),
    )


def _inspect_onnx(folder: Path, source: str, name: str) -> ModelEntry:
    """An ONNX Runtime GenAI copy (`slmchat quantize --method onnx-int8`)."""
    model = read_json(folder / "genai_config.json").get("model") or {}
    dec = model.get("decoder") or {}
    marker = read_json(folder / "slmchat-onnx.json")
    heads = int(dec.get("num_attention_heads") or 0)
    built_from = marker.get("source")
    origin = (inspect_folder(Path(built_from), source) if isinstance(built_from, str) and built_from
              and Path(built_from).is_dir() and Path(built_from) != folder else None)
    return ModelEntry(
        name=name, path=str(folder), source=source, format="onnx-int8",
        n_params=origin.n_params if origin is not None else 0,  # the checkpoint it was built from
        architecture=str(model.get("type") or "?"), size_bytes=dir_size(folder),
        has_chat_template=_has_template(folder),
        context_length=int(model.get("context_length") or 0),
        vocab_size=int(model.get("vocab_size") or 0), hidden_size=int(dec.get("hidden_size") or 0),
        n_layers=int(dec.get("num_hidden_layers") or 0),
        n_kv_heads=int(dec.get("num_key_value_heads") or heads), head_dim=int(dec.get("head_size") or 0),
        dtype="int8", problem=None if marker.get("files") else "no slmchat marker (not checked)",
    )


def inspect_gguf(path: Path, source: str, name: str | None = None) -> ModelEntry:
    """A ModelEntry from GGUF metadata (the header only; tensors are not read)."""
    from slmchat.engine.model.gguf_header import read_header

    if (damage := gguf_damage(path)) is not None:
        return ModelEntry(name=name or path.stem, path=str(path), source=source, format="gguf",
                          size_bytes=path.stat().st_size, problem=damage)

    try:
        header = read_header(path)
    except Exception as exc:
        return ModelEntry(name=name or path.stem, path=str(path), source=source, format="gguf",
                          size_bytes=path.stat().st_size, problem=f"unreadable GGUF: {exc}"[:120])
    meta, n = header.meta, header.n_params
    arch = str(meta.get("general.architecture", "?"))
    problem = "truncated: the file is shorter than its tensors" if header.truncated \
        else _gguf_problem(path, arch)
    heads = int(meta.get(f"{arch}.attention.head_count") or 0)
    hidden = int(meta.get(f"{arch}.embedding_length") or 0)
    return ModelEntry(
        name=name or path.stem, path=str(path), source=source, format="gguf",
        architecture=arch, n_params=n, size_bytes=path.stat().st_size,
        has_chat_template="tokenizer.chat_template" in meta,
        context_length=int(meta.get(f"{arch}.context_length") or 0),
        vocab_size=int(meta.get(f"{arch}.vocab_size") or 0), hidden_size=hidden,
        n_layers=int(meta.get(f"{arch}.block_count") or 0),
        n_kv_heads=int(meta.get(f"{arch}.attention.head_count_kv") or heads),
        head_dim=int(meta.get(f"{arch}.rope.dimension_count") or (hidden // heads if heads else 0)),
        extra={"file_type": meta.get("general.file_type")}, problem=problem,
        # GGUF metadata has no biases/rope-type flags; a "llama" GGUF loads as a Llama
        # config in transformers, and the loaded config is checked again before export.
        plain_llama=arch == "llama",
    )


def _gguf_problem(path: Path, arch: str) -> str | None:
    """Why a readable GGUF file still cannot be chatted with here, if it cannot."""
    if arch == "clip":
        return "a vision projector (mmproj), not a language model"
    split = _SPLIT_GGUF.search(path.name)
    if split and split.group(2) != "00001":
        return f"split GGUF in {int(split.group(2))} parts: merge it first (llama-gguf-split)"
    return None


def _unreadable(path: Path, source: str, name: str, exc: Exception, more: int = 0) -> ModelEntry:
    """What could not be read, listed with the reason instead of failing the scan."""
    why = getattr(exc, "strerror", None) or first_line(exc)
    extra = f" (and {more} more unreadable)" if more else ""
    return ModelEntry(name=name, path=str(path), source=source, format="folder",
                      problem=f"skipped, cannot read: {why}{extra}")


def scan_folder(root: Path, source: str, prefix: str = "") -> list[ModelEntry]:
    """Checkpoints, adapters and .gguf files at or below ``root`` (hidden names skipped).

    What cannot be read (no permission, a link into /proc) is listed once with its
    reason, never raised; the scan stops after MAX_SCAN_FOLDERS folders or
    MAX_SCAN_SECONDS (``dirs = ["/"]``) and says so; /proc, /sys and /dev are skipped."""
    found: list[ModelEntry] = []
    try:
        if root.is_file():
            return [inspect_gguf(root, source)] if root.suffix.lower() == ".gguf" else []
        if not root.is_dir():
            return found
    except (OSError, ValueError) as exc:
        return [_unreadable(root, source, prefix.rstrip("/") or root.name, exc)]
    skipped: list[tuple[Path, str, Exception]] = []
    stack: list[tuple[Path, int]] = [(root, 0)]
    visited, deadline = 0, time.monotonic() + MAX_SCAN_SECONDS
    while stack:
        if visited >= MAX_SCAN_FOLDERS or time.monotonic() > deadline:
            found.append(ModelEntry(
                name=prefix.rstrip("/") or root.name, path=str(root), source=source,
                format="folder", problem=f"scan stopped after {visited} folders: point "
                "[model] dirs at the folders that hold models"))
            break
        folder, depth = stack.pop()
        visited += 1
        rel = folder.relative_to(root).as_posix()
        label = f"{prefix}{rel}" if rel != "." else (prefix.rstrip("/") or folder.name)
        try:
            entry = inspect_folder(folder, source, name=label)
        except OSError as exc:
            skipped.append((folder, label, exc))
            continue
        if entry is not None:
            found.append(entry)
        try:
            children = sorted(folder.iterdir())
        except OSError as exc:
            if entry is None:  # a model folder lists its files itself
                skipped.append((folder, label, exc))
            continue
        for child in children:
            if child.name.startswith(".") or child.name in _SKIP_DIRS:
                continue
            split = _SPLIT_GGUF.search(child.name)
            if split and split.group(1) != "00001":
                continue  # one entry per split model, on its first part
            name = f"{prefix}{child.relative_to(root)}"
            try:
                if child.is_file() and child.suffix.lower() == ".gguf":
                    found.append(inspect_gguf(child, source, name=name))
                elif child.is_dir() and depth < MAX_DEPTH and entry is None and \
                        str(child.resolve()) not in _PSEUDO_FS:
                    stack.append((child, depth + 1))
            except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
                skipped.append((child, name, exc))
    if skipped:
        path, name, error = skipped[0]
        found.append(_unreadable(path, source, name, error, more=len(skipped) - 1))
    return found


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def scan_hf_cache(cache: Path | None = None) -> list[ModelEntry]:
    """Snapshots of ``models--org--name`` repos in the Hugging Face cache (read-only)."""
    cache = cache or hf_cache_dir()
    found: list[ModelEntry] = []
    if not cache.is_dir():
        return found
    for repo in sorted(cache.glob("models--*")):
        repo_id = repo.name[len("models--"):].replace("--", "/")
        snapshots = sorted((repo / "snapshots").glob("*")) if (repo / "snapshots").is_dir() else []
        for snap in snapshots:
            label = repo_id if len(snapshots) == 1 else f"{repo_id}@{snap.name[:7]}"
            found.extend(scan_folder(snap, "hf-cache", prefix=f"{label}/"))
    return found


def _tool_entry(model: ToolModel) -> ModelEntry:
    """A store entry (Ollama manifest, llama.cpp manifest) as a ModelEntry."""
    extra = {"store": model.extra} if model.extra else {}
    if model.path is None:
        return ModelEntry(name=model.name, path=str(model.where), source=model.source,
                          format="gguf", problem=model.problem, extra=extra)
    entry = inspect_gguf(model.path, model.source, name=model.name)
    return ModelEntry(**{**entry.as_dict(), "problem": entry.problem or model.problem,
                         "extra": {**entry.extra, **extra}})


def _merge_aliases(entries: list[ModelEntry]) -> list[ModelEntry]:
    """One entry per file: ``qwen2.5:latest`` and ``qwen2.5:0.5b`` share one blob."""
    by_path: dict[str, int] = {}
    out: list[ModelEntry] = []
    for entry in entries:
        key = entry.path if entry.problem is None else f"{entry.path}#{entry.name}"
        if key in by_path:
            first = out[by_path[key]]
            aliases = [*first.extra.get("aliases", ()), entry.name]
            out[by_path[key]] = ModelEntry(**{**first.as_dict(),
                                              "extra": {**first.extra, "aliases": aliases}})
            continue
        by_path[key] = len(out)
        out.append(entry)
    return out


def scan_tool_stores(env: Any = None, home: Path | None = None) -> list[ModelEntry]:
    """Models other tools downloaded, named as those tools name them (read-only).

    ``env``/``home``: see toolstores.tool_roots (tests point them into a temp folder)."""
    roots = tool_roots(env, home)
    found: list[ModelEntry] = []
    for root in roots.ollama:
        found.extend(_merge_aliases([_tool_entry(m) for m in ollama_models(root)]))
    for root in roots.lm_studio:
        found.extend(scan_folder(root, "lm-studio"))
    for root in roots.llama_cpp:
        named = llama_cpp_models(root)
        found.extend(_tool_entry(m) for m in named)
        taken = {m.path.name for m in named if m.path is not None}
        found.extend(e for e in scan_folder(root, "llama.cpp")
                     if Path(e.path).name not in taken)
        found.extend(ModelEntry(**{**e.as_dict(), "source": "llama.cpp"})
                     for e in scan_hf_cache(root))
    for root in roots.gpt4all:
        found.extend(scan_folder(root, "gpt4all"))
    return found


def default_entry() -> ModelEntry:
    """The embedded model: its converted folder if ready, else the wheel's GGUF."""
    from slmchat.engine.model import default as dm

    if dm.is_converted():
        entry = inspect_folder(dm.converted_dir(), "default", name=dm.MODEL_NAME)
    else:
        try:
            entry = inspect_gguf(dm.gguf_path(), "default", name=dm.MODEL_NAME)
        except Exception as exc:
            return ModelEntry(name=dm.MODEL_NAME, path="default", source="default",
                              format="gguf", problem=str(exc))
    assert entry is not None
    return ModelEntry(**{**entry.as_dict(), "path": "default"})


def _resolved(path: str) -> str:
    try:
        return str(Path(path).resolve())
    except (OSError, RuntimeError):  # a link into /proc, a symlink loop: as written
        return path


def remote_entries(settings: Any) -> list[ModelEntry]:
    """The models of each ``[[remote]]`` profile in ``settings`` (one listing request per
    profile; none without a profile). A profile that cannot be listed is one entry with
    its problem (`slmchat models` shows it; the switcher leaves it out)."""
    found: list[ModelEntry] = []
    kind = remote.FORMAT
    for prof in (r.profile() for r in getattr(settings, "remote", None) or ()):
        extra = {"profile": prof.name, "host": prof.host, "loopback": prof.loopback}
        try:
            models = remote.list_models(prof)
        except Exception as exc:  # RemoteError; anything else must not break a listing
            found.append(ModelEntry(name=f"{prof.name}:*", path=remote.remote_path(prof.name, "*"),
                                    source=kind, format=kind, problem=first_line(exc),
                                    extra=extra))
            continue
        for m in models:
            found.append(ModelEntry(
                name=f"{prof.name}:{m.id}", path=remote.remote_path(prof.name, m.id),
                source=kind, format=kind, architecture=m.owned_by or prof.kind,
                n_params=m.n_params, size_bytes=m.size_bytes, has_chat_template=True,
                context_length=m.context_length,
                extra={**extra, **{k: v for k, v in m.extra.items() if v}}))
    return found


def discover(settings: Any = None, *, include_default: bool = True,
             include_hf_cache: bool = True, hf_cache: Path | None = None,
             include_tools: bool = True, include_remote: bool = True) -> list[ModelEntry]:
    """Every local model, default first, de-duplicated by resolved path, then the models
    of the remote profiles in ``settings`` (``include_remote``; the only network use, and
    only when a profile exists).

    ``settings`` (the caller's loaded Settings) adds its ``model.dirs``; the engine does
    not read the settings file itself. ``include_tools``: other tools' stores (Ollama,
    LM Studio, llama.cpp, GPT4All), listed before the settings folders so a model keeps
    the name its tool gives it."""
    from slmchat.paths import models_dir, runs_dir

    entries: list[ModelEntry] = []
    if include_default:
        entries.append(default_entry())
    for run in sorted(runs_dir().iterdir()) if runs_dir().is_dir() else []:
        if run.is_dir() and not run.name.startswith("."):
            entries.extend(scan_folder(run, "run", prefix=f"{run.name}/"))
    entries.extend(scan_folder(models_dir(), "models"))
    if include_tools:
        entries.extend(scan_tool_stores())
    for folder in (settings.model.dirs if settings is not None else ()):
        try:
            root = Path(folder).expanduser()
        except RuntimeError as exc:  # "~nobody-here": no such user
            entries.append(_unreadable(Path(folder), "settings", str(folder), exc))
            continue
        entries.extend(scan_folder(root, "settings", prefix=f"{root.name}/"))
    if include_hf_cache:
        entries.extend(scan_hf_cache(hf_cache))
    seen: set[str] = set()
    unique: list[ModelEntry] = []
    for entry in entries:
        key = entry.path if entry.path == "default" else _resolved(entry.path)
        if entry.problem and entry.source in TOOL_SOURCES:
            key += f"#{entry.source}:{entry.name}"  # broken manifests share nothing
        if key in seen:
            continue
        seen.add(key)
        unique.append(entry)
    if include_remote:
        unique.extend(remote_entries(settings))
    return unique


def filter_entries(entries: Iterable[ModelEntry], query: str) -> list[ModelEntry]:
    """Entries whose text contains every word of ``query`` (case-insensitive)."""
    words = query.lower().split()
    return [e for e in entries if all(w in e.search_text for w in words)]


@dataclass(frozen=True)
class MemoryEstimate:
    """Rough RAM/VRAM needed to load and run a model (weights + full-context KV cache)."""

    weights_bytes: int
    kv_cache_bytes: int
    overhead_bytes: int
    available_bytes: int | None  # free system RAM now (CPU loads); None if unknown

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_cache_bytes + self.overhead_bytes

    @property
    def fits(self) -> bool | None:
        return None if self.available_bytes is None else self.total_bytes < self.available_bytes


_DTYPE_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0}


def estimate_memory(spec: Any, entry: ModelEntry, base: ModelEntry | None = None) -> MemoryEstimate:
    """Estimate memory for loading ``entry`` as ``spec`` (adapters: pass the base entry).

    Embeddings stay in float under every quantization here (bitsandbytes and cpu-int8
    only quantize Linear layers), so they are counted separately from the rest.
    """
    model = base if entry.format == "lora" and base is not None else entry
    device = spec.device if spec.device != "auto" else "cpu"
    float_bytes = _DTYPE_BYTES.get(spec.dtype, 4.0 if device == "cpu" else 2.0)
    n = model.n_params
    emb = min(n, model.vocab_size * model.hidden_size)
    linear = n - emb
    quant = spec.quant
    if model.format in ("bnb-8bit", "cpu-int8"):
        quant = "8bit" if quant == "none" else quant
    elif model.format == "bnb-4bit":
        quant = "4bit" if quant == "none" else quant
    if quant in ("8bit", "cpu-int8"):
        # int8 weights + a float scale per row; cpu-int8 also keeps a float32 embedding.
        per_linear = 1.02
        emb_bytes = 4.0 if quant == "cpu-int8" else 2.0
    elif quant == "4bit":
        per_linear = 0.5 + (0.02 if spec.bnb_4bit_double_quant else 0.07)
        emb_bytes = 2.0
    else:
        per_linear, emb_bytes = float_bytes, float_bytes
    weights = int(linear * per_linear + emb * emb_bytes)
    if model.format == "onnx-int8":  # the files are the weights
        weights = model.size_bytes
    if entry.format == "lora":
        weights += int(entry.n_params * float_bytes)
    kv_bytes = 4.0 if model.format == "onnx-int8" else (2.0 if float_bytes == 2.0 else 4.0)
    ctx = min(model.context_length or 2048, 8192)
    kv = int(2 * model.n_layers * model.n_kv_heads * model.head_dim * ctx * kv_bytes)
    overhead = int(0.1 * weights) + (200 << 20)  # activations, allocator, runtime
    available: int | None = None
    if device == "cpu":
        try:
            import psutil

            available = int(psutil.virtual_memory().available)
        except Exception:
            available = None
    return MemoryEstimate(weights, kv, overhead, available)


def _names_of(entry: ModelEntry) -> set[str]:
    """Every name ``slmchat models`` shows for an entry, as typed: ``tidewater:q4``,
    ``ollama:tidewater:q4``, ``ollama: tidewater:q4``, aliases, ``NAME`` for ``NAME:latest``."""
    names = {entry.name, *entry.extra.get("aliases", ())}
    for name in list(names):
        if name.endswith(":latest"):
            names.add(name[: -len(":latest")])
    if entry.source in TOOL_SOURCES:
        for name in list(names):
            names.update({f"{entry.source}:{name}", f"{entry.source}: {name}"})
    return names


def resolve_name(text: str, settings: Any = None, entries: list[ModelEntry] | None = None) -> str:
    """What ``--model TEXT`` loads: ``TEXT`` itself when it is "default" or a path that
    exists, else the path of the one discovered model named ``TEXT`` (the names
    ``slmchat models`` prints). ModelLoadError in one line when none or several match."""
    from slmchat.errors import ModelLoadError

    if text in ("default", ""):
        return text
    typed = remote.resolve_typed(text)  # NAME:model of a configured profile
    if typed is not None:
        return typed
    try:
        if Path(text).expanduser().exists():
            return text
    except (OSError, ValueError):  # a name too long for a path, a NUL byte
        pass
    found = entries if entries is not None else discover(settings, include_default=False,
                                                         include_remote=False)
    matches = [e for e in found if text in _names_of(e) or text.lower() in
               {n.lower() for n in _names_of(e)}]
    usable = [e for e in matches if e.problem is None] or matches
    paths = sorted({e.path for e in usable})
    if len(paths) == 1:
        if usable[0].problem:
            raise ModelLoadError(f"model {text!r} ({usable[0].path}): {usable[0].problem}")
        return paths[0]
    if not paths:
        if "/" in text or text.startswith("~") or text.lower().endswith(".gguf"):
            return text  # a path after all: the loader says it does not exist
        raise ModelLoadError(f"model path does not exist and no local model is named {text!r} "
                             "(`slmchat models` lists the names)")
    shown = ", ".join(sorted(e.label for e in usable)[:8])
    raise ModelLoadError(f"{text!r} names {len(paths)} models: {shown}; use one of these names "
                         "or a path")
