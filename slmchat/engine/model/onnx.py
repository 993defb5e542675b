"""The ONNX runtime's model side: converted copies (cached, checked) and loading them.

A checkpoint chatted with on the ``onnx`` runtime is converted once by ONNX Runtime
GenAI's model builder (int8 weights, CPU, logits for a window of the last positions;
onnx_build.py runs it in a child process, and onnx_requant.py then redoes its int8
blocks with zero points that hold a quantized source's grid) into the user cache folder,
keyed by the checkpoint's fingerprint (and the adapter's, for a LoRA result: merged
first). The copy is written atomically and carries a marker with the size and SHA-256 of
every file; a copy whose marker is missing, stale or disagrees with the files (sizes
always; content whenever a file was touched since it was last hashed, and fully in
``slmchat doctor``) is rebuilt, never used. Loading a cached copy needs neither torch
nor transformers: the tokenizer and chat template come from the copy's folder through
lite.LiteTokenizer, the model from ``onnxruntime_genai``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from slmchat.engine.fsutil import atomic_dir, hold_in_use, is_in_use, write_text_atomic
from slmchat.engine.model.files import fingerprint, read_json
from slmchat.engine.model.spec import Progress
from slmchat.errors import ModelLoadError, first_line

# Bump when the conversion recipe changes so that cached copies are rebuilt.
RECIPE_VERSION = 3  # 2: logits for the last LOGITS_WINDOW positions (draft verification)
# 3: int8 blocks with zero points that hold a quantized source's grid (onnx_requant)
# Logits rows a copy keeps (the LM head runs on the last LOGITS_WINDOW positions of a
# forward): enough to verify a speculative draft (at most K_MAX + 1 rows), none wasted on
# a long prompt (onnx_build.logits_window).
LOGITS_WINDOW = 16
PRECISION = "int8"
MARKER = "slmchat-onnx.json"
# Architectures ONNX Runtime GenAI 0.18's builder converts for the CPU that we have seen
# run (decoder-only text models); anything else stays on transformers.
SUPPORTED_ARCHITECTURES = frozenset({
    "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
    "Phi3ForCausalLM", "PhiForCausalLM", "GemmaForCausalLM", "Gemma2ForCausalLM",
    "Gemma3ForCausalLM", "GraniteForCausalLM", "OlmoForCausalLM", "NemotronForCausalLM",
    "SmolLM3ForCausalLM",
})
BUILD_TIMEOUT_S = 3600


class OnnxUnavailable(ModelLoadError):
    """This model cannot run on the onnx runtime here; the caller may fall back."""


def architecture(folder: Path) -> str | None:
    archs = read_json(folder / "config.json").get("architectures") or []
    return str(archs[0]) if isinstance(archs, list) and archs else None


def unsupported_reason(folder: Path) -> str | None:
    """Why the builder cannot convert ``folder`` (None when it can)."""
    arch = architecture(folder)
    if arch not in SUPPORTED_ARCHITECTURES:
        return f"the ONNX builder does not support {arch or 'this architecture'}"
    cfg = read_json(folder / "config.json")
    if not cfg:
        return "unreadable config.json"
    if cfg.get("quantization_config"):
        return "the checkpoint is already quantized"
    if not (folder / "tokenizer.json").is_file():
        return "no tokenizer.json (a fast tokenizer is needed)"
    if not list(folder.glob("*.safetensors")):
        return "no safetensors weights"
    return None


def runtime_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnxruntime-genai")
    except PackageNotFoundError as exc:
        raise OnnxUnavailable("onnxruntime-genai is not installed") from exc


def _file_hash(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return "-"


def copy_key(source: Path, adapter: Path | None) -> str:
    """What the copy is built from: the weights and the config that shapes the graph.

    The tokenizer and chat template are not in the key: they are read from the source
    folder at every load (load_copy), so editing a template never serves a stale one.
    """
    parts = [fingerprint(sorted(source.glob("*.safetensors"))), _file_hash(source / "config.json")]
    if adapter is not None:
        parts += [fingerprint(sorted(adapter.glob("*.safetensors"))),
                  _file_hash(adapter / "adapter_config.json")]
    parts += [f"recipe{RECIPE_VERSION}", PRECISION, runtime_version()]
    return hashlib.sha256(":".join(parts).encode()).hexdigest()[:16]


def copies_dir() -> Path:
    from slmchat.paths import cache_dir

    return cache_dir() / "onnx"


def copy_path(name: str, source: Path, adapter: Path | None) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]
    return copies_dir() / f"{safe}-{PRECISION}-{copy_key(source, adapter)}"


# ---------------------------------------------------------------- checking a copy


def _payload(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name != MARKER)


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _stat_key(path: Path) -> list[int] | None:
    """What changes whenever a file is written (ctime cannot be set back): while it
    matches the one recorded after the last hash, the content is taken as checked."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def write_marker(folder: Path, meta: dict[str, Any]) -> None:
    payload = _payload(folder)
    files = {p.name: p.stat().st_size for p in payload}
    # A content hash per file: damage that keeps the size (bytes flipped inside
    # model.onnx.data) is found by content_problem, not by an empty reply.
    hashes = {p.name: _sha256(p) for p in payload}
    checked = {p.name: _stat_key(p) for p in payload}
    (folder / MARKER).write_text(json.dumps({"recipe": RECIPE_VERSION, **meta, "files": files,
                                             "sha256": hashes, "checked": checked}, indent=2))


def content_problem(folder: Path, meta: dict[str, Any], deep: bool = False) -> str | None:
    """Which file's content differs from the hash recorded at build time, if any.

    Cheap by default: only files whose size, times or inode changed since they were
    last hashed are hashed again (then the marker is updated where it can be written);
    ``deep`` (``slmchat doctor``, a copy that failed to load) hashes every file. A copy
    from before hashes were recorded has nothing to compare: None."""
    hashes = meta.get("sha256")
    if not isinstance(hashes, dict):
        return None
    recorded = meta.get("checked")
    checked: dict[str, Any] = dict(recorded) if isinstance(recorded, dict) else {}
    rehashed = False
    for name, digest in sorted(hashes.items()):
        path = folder / str(name)
        key = _stat_key(path)
        if not deep and key is not None and key == checked.get(name):
            continue
        try:
            actual = _sha256(path)
        except OSError as exc:
            return f"{name} is unreadable ({exc.strerror or exc})"
        if actual != digest:
            return f"{name} is damaged (its content differs from when it was built)"
        checked[name], rehashed = key, True
    if rehashed:  # a copied or touched folder: hash it once, not at every load
        with contextlib.suppress(OSError):  # a read-only cache: checked again next time
            write_text_atomic(folder / MARKER, json.dumps({**meta, "checked": checked},
                                                          indent=2))
    return None


def check_copy(folder: Path, deep: bool = False) -> str | None:
    """Why the copy at ``folder`` must not be used (None when it is whole): its marker,
    the files and sizes it lists, and their content (content_problem; ``deep``: every
    file hashed)."""
    if not folder.is_dir():
        return "missing"
    try:
        meta = json.loads((folder / MARKER).read_text())
        files = dict(meta["files"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        return "no completion marker (a half-built copy)"
    if meta.get("recipe") != RECIPE_VERSION:
        return "built by an older recipe"
    for name in ("genai_config.json", "tokenizer.json"):
        if name not in files:
            return f"{name} missing"
    for name, size in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} missing"
        if path.stat().st_size != size:
            return f"{name} has the wrong size (corrupt or truncated)"
    try:
        json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]["filename"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return "genai_config.json is unreadable"
    return content_problem(folder, meta, deep)


def is_onnx_folder(folder: Path) -> bool:
    return (folder / "genai_config.json").is_file()


# ---------------------------------------------------------------- building a copy


def build_copy(source: Path, out: Path, adapter: Path | None = None,
               progress: Progress | None = None, full_logits: bool = False,
               overwrite: bool = False) -> Path:
    """Run the builder in a child process into ``out`` (atomically); return ``out``."""
    n_layers = _n_layers(source)
    cmd = [sys.executable, "-m", "slmchat.engine.model.onnx_build", "--source", str(source),
           "--out", "", "--precision", PRECISION]
    if adapter is not None:
        cmd += ["--adapter", str(adapter)]
    cmd += ["--full-logits"] if full_logits else ["--logits-window", str(LOGITS_WINDOW)]
    with atomic_dir(out, overwrite=overwrite) as tmp:
        cmd[cmd.index("--out") + 1] = str(tmp)
        _run_builder(cmd, n_layers, progress)
        write_marker(tmp, {"source": str(source),
                           "source_fingerprint": fingerprint(sorted(source.glob("*.safetensors"))),
                           "adapter": str(adapter) if adapter else None,
                           "precision": PRECISION, "onnxruntime_genai": runtime_version(),
                           "last_token_logits": False,
                           "logits_window": None if full_logits else LOGITS_WINDOW,
                           "built_at": time.time()})
        problem = check_copy(tmp)
        if problem:
            raise OnnxUnavailable(f"the ONNX builder produced an incomplete copy ({problem})")
    return out


def _n_layers(source: Path) -> int:
    try:
        return int(read_json(source / "config.json").get("num_hidden_layers") or 0)
    except (ValueError, TypeError):
        return 0


def _run_builder(cmd: list[str], n_layers: int, progress: Progress | None) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, errors="replace")
    assert proc.stdout is not None
    error = ""
    tail: list[str] = []
    try:
        for raw in proc.stdout:  # text mode splits on \r too: tqdm bars arrive as lines
            line = raw.strip()
            if not line:
                continue
            tail = [*tail[-20:], line]
            if line.startswith("slmchat-error:"):
                error = line.split(":", 1)[1].strip()
            elif progress is not None:
                _report(line, n_layers, progress)
        rc = proc.wait(timeout=BUILD_TIMEOUT_S)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if rc != 0:
        detail = error or next((t for t in reversed(tail) if "Error" in t), "") or f"exit {rc}"
        raise OnnxUnavailable(f"the ONNX builder failed: {detail[:200]}")


def _report(line: str, n_layers: int, progress: Progress) -> None:
    if line.startswith("slmchat: "):
        progress(line[len("slmchat: "):], 0.05)
    elif line.startswith("Reading layer ") and n_layers:
        try:
            i = int(line.split()[2]) + 1
        except (IndexError, ValueError):
            return
        # One message for all layers (a log gets one line; a terminal bar still moves).
        progress("converting the layers", 0.1 + 0.6 * i / n_layers)
    elif "quantiz" in line.lower() and "lm_head" in line:
        progress("quantizing the LM head", 0.8)
    elif line.startswith("Saving GenAI config"):
        progress("saving", 0.95)


def ensure_copy(name: str, source: Path, adapter: Path | None = None,
                progress: Progress | None = None) -> Path:
    """The cached copy for ``source`` (+ ``adapter``), built once; rebuilt when broken."""
    reason = unsupported_reason(source)
    if reason:
        raise OnnxUnavailable(reason)
    target = copy_path(name, source, adapter)
    if check_copy(target) is None and _without_hashes(target) is None:
        return target
    # The same weights under another name (a renamed or copied folder): the key decides.
    for other in sorted(target.parent.glob(f"*-{target.name.rsplit('-', 1)[-1]}")):
        if other != target and not other.name.startswith(".") and check_copy(other) is None:
            return other
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # One builder per copy at a time (the app and a CLI command may start together).
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        problem = check_copy(target) or _without_hashes(target)
        if problem is None:
            return target
        for stale in target.parent.glob(f".{target.name}.tmp-*"):  # a killed builder's leftovers
            shutil.rmtree(stale, ignore_errors=True)
        if progress is not None:
            if target.exists():
                progress(f"rebuilding the ONNX copy of {name} ({problem})", 0.0)
            else:
                progress(f"converting {name} to ONNX int8 (one time, seconds to a minute)", 0.0)
        start = time.perf_counter()
        build_copy(source, target, adapter, progress, overwrite=True)
        if progress is not None:
            progress(f"ONNX copy ready in {time.perf_counter() - start:.0f} s", 1.0)
    return target


def _without_hashes(folder: Path) -> str | None:
    """A cached copy built before content hashes were recorded is rebuilt once, so that
    same-size damage can be found in it too; not while a running process uses it."""
    try:
        meta = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None  # check_copy says what is wrong
    if isinstance(meta, dict) and isinstance(meta.get("sha256"), dict):
        return None
    return None if is_in_use(folder) else "built without content hashes"


def mark_damaged(folder: Path) -> None:
    """Forget when the copy's files were last hashed, so the next load's check hashes
    them all again, finds the damage and rebuilds (a standalone copy is refused); the
    files stay, as the running model may still read them."""
    try:
        meta = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return
    if isinstance(meta, dict):
        meta.pop("checked", None)
        with contextlib.suppress(OSError):  # a read-only cache: nothing to mark
            write_text_atomic(folder / MARKER, json.dumps(meta, indent=2))


def discard_copy(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- loading a copy


class OnnxModel:
    """An ONNX Runtime GenAI model plus what the decode loop reads from a model.

    The og.Model is rebuilt when the thread count changes (a fine-tune started beside
    chat).
    """

    def __init__(self, folder: Path, threads: int, text_dir: Path | None = None) -> None:
        hold_in_use(folder)  # `slmchat cache clear` skips a copy a running process uses
        self.folder = folder
        genai = json.loads((folder / "genai_config.json").read_text())["model"]
        self.config = SimpleNamespace(
            eos_token_id=genai.get("eos_token_id"), bos_token_id=genai.get("bos_token_id"),
            vocab_size=int(genai.get("vocab_size") or 0),
            max_position_embeddings=int(genai.get("context_length") or 2048),
            num_hidden_layers=int(genai.get("decoder", {}).get("num_hidden_layers") or 0),
            model_type=genai.get("type", ""),
        )
        gen_path = (text_dir or folder) / "generation_config.json"
        self.generation_config = (SimpleNamespace(**json.loads(gen_path.read_text()))
                                  if gen_path.is_file() else self.config)
        self.threads = 0
        self.og: Any = None
        self.generation = 0  # bumped on every reload: old generator states are then stale
        self.set_threads(threads)

    def set_threads(self, threads: int) -> None:
        if threads == self.threads and self.og is not None:
            return
        import onnxruntime_genai as og

        if hasattr(og, "disable_telemetry_events"):
            og.disable_telemetry_events()  # no-op off Windows; offline means offline
        from slmchat.engine.model.onnx_capi import Model

        # Through the C API (onnx_capi): a forward there releases the GIL, the Python
        # module's does not.
        self.og = Model(self.folder, json.dumps({"model": {"decoder": {"session_options": {
            "intra_op_num_threads": int(threads), "inter_op_num_threads": 1}}}}))
        self.threads = threads
        self.generation += 1

    @property
    def context_length(self) -> int:
        return int(self.config.max_position_embeddings)

    def eval(self) -> OnnxModel:
        return self


def _source_params(source: Path) -> int:
    """The parameter count of the checkpoint a copy was built from (its safetensors
    headers; 0 when it cannot be read): the copy itself holds int8 blocks, not a count."""
    from slmchat.engine.model.discovery import inspect_folder

    try:
        entry = inspect_folder(source, "onnx")
    except (OSError, ValueError):
        return 0
    return entry.n_params if entry is not None else 0


def load_copy(folder: Path, spec: Any, name: str, kind: str, source_path: Path,
              source_fp: str, threads: int, warnings: tuple[str, ...] = ()) -> Any:
    """Load a checked copy into a LoadedModel (no torch, no transformers).

    Tokenizer, chat template and end-of-sequence ids come from ``source_path`` when it
    has them (the folder the user chose, as the transformers runtime reads it), else from
    the copy (a standalone copy written by `quantize --method onnx-int8`)."""
    from slmchat.engine.model.lite import LiteTokenizer
    from slmchat.engine.model.spec import LoadedModel, ModelInfo

    start = time.perf_counter()
    try:
        text_dir = source_path if (source_path / "tokenizer.json").is_file() else folder
        model = OnnxModel(folder, threads, text_dir)
        tokenizer = LiteTokenizer(text_dir)
    except Exception as exc:  # a corrupt graph or tokenizer: the caller rebuilds or falls back
        damage = check_copy(folder, deep=True)  # say whether its files were damaged
        raise OnnxUnavailable(f"the ONNX copy {folder.name} does not load: "
                              f"{type(exc).__name__}: {first_line(exc, default='')[:160]}"
                              + (f" ({damage})" if damage else "")) from exc
    files = _payload(folder)
    data = [p for p in files if p.suffix in (".onnx", ".data")]
    info = ModelInfo(
        name=name, path=str(source_path), kind=kind,
        architecture=architecture(source_path) or str(model.config.model_type),
        n_params=_source_params(source_path), footprint_bytes=sum(p.stat().st_size for p in data),
        load_time_s=time.perf_counter() - start, context_length=model.context_length,
        has_chat_template=bool(tokenizer.chat_template), dtype=PRECISION, device="cpu",
        quant="none", adapter=str(spec.adapter) if getattr(spec, "adapter", None) else None,
        fingerprint=source_fp, warnings=warnings, runtime="onnx", runtime_tag="onnx",
        runtime_copy=fingerprint(data),
    )
    return LoadedModel(spec=spec, model=model, tokenizer=tokenizer, info=info,
                       extra={"onnx_dir": str(folder)})
