"""The cache folder's converted copies: list them, check them, clear them.

Everything under the cache folder (``slmchat.paths.cache_dir()``) can be rebuilt: the
safetensors copy of the default model (``models/<name>``), ONNX copies (``onnx/<name>``)
and whatever later runtimes convert. A copy is any folder one level below a top-level
folder of the cache (or a top-level folder that holds files itself), so copies made by
code this module does not know about are listed too. Hidden folders there are the temp
folders of interrupted conversions.

Clearing never touches conversations, settings, runs or models the user made: those live
in the data and config folders, and a copy that is (or holds, or lies in) one of those is
refused even when the folders are pointed at one another. A copy that a running process
uses (``fsutil.hold_in_use``) is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from slmchat.engine.fsutil import dir_size, exclusive_use, in_use_lock, is_in_use
from slmchat.engine.model import default as default_model
from slmchat.engine.model import onnx
from slmchat.engine.model.files import check_safetensors
from slmchat.errors import ModelLoadError

# A temp folder younger than this may belong to a conversion running now.
PARTIAL_GRACE_S = 3600
DAY_S = 86400


@dataclass(frozen=True)
class CachedCopy:
    path: Path
    kind: str  # the cache subfolder: "models" (safetensors), "onnx", ...
    name: str
    source: str | None  # what it was converted from, when its marker says
    size_bytes: int
    last_used: float  # epoch seconds: the last load, else when it was written
    problem: str | None  # None when the copy is whole
    in_use: bool
    partial: bool  # the temp folder of an interrupted conversion

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.name}" if self.kind else self.name

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        d["label"] = self.label
        return d


def cache_root() -> Path:
    from slmchat.paths import cache_dir

    return cache_dir()


def _marker(folder: Path) -> tuple[Path | None, dict[str, Any] | None]:
    """The ``slmchat-*.json`` completion marker a converter wrote, and its content."""
    for path in sorted(folder.glob("slmchat-*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return path, None
        return path, data if isinstance(data, dict) else None
    return None, None


def check_copy(folder: Path, deep: bool = False) -> str | None:
    """Why the copy at ``folder`` must not be used (None when it looks whole).

    Generic checks that hold for every converter: a readable completion marker, the
    files and sizes it lists, JSON files that parse, safetensors files as long as their
    headers say; plus the default model's own recipe check. ``deep`` (doctor): the
    content of every file whose marker records its SHA-256 (ONNX copies) is hashed.
    """
    if not folder.is_dir():
        return "missing"
    marker, meta = _marker(folder)
    if marker is None:
        return "no completion marker (an interrupted conversion or a foreign folder)"
    if meta is None:
        return f"{marker.name} is unreadable"
    listed = meta.get("files")
    if isinstance(listed, dict):
        for name, size in listed.items():
            path = folder / str(name)
            if not path.is_file():
                return f"{name} missing"
            if isinstance(size, int) and path.stat().st_size != size:
                return f"{name} has the wrong size (corrupt or truncated)"
    for path in sorted(folder.glob("*.json")):
        try:
            json.loads(path.read_text())
        except (OSError, ValueError):
            return f"{path.name} is unreadable (corrupt)"
    try:
        check_safetensors(sorted(folder.glob("*.safetensors")))
    except ModelLoadError as exc:
        return str(exc).replace(f"{folder}{os.sep}", "")
    if marker.name == default_model.MARKER and not default_model.is_converted(folder):
        return "made by an older conversion recipe or missing its weights"
    if deep:
        return onnx.content_problem(folder, meta, deep=True)
    return None


def _last_used(folder: Path) -> float:
    times = []
    for path in (in_use_lock(folder), folder):
        try:
            times.append(path.stat().st_mtime)
        except OSError:
            continue
    return max(times, default=0.0)


def _newest_mtime(folder: Path) -> float:
    newest = 0.0
    for root, _dirs, files in os.walk(folder):
        for name in [*files, "."]:
            try:
                newest = max(newest, os.stat(os.path.join(root, name)).st_mtime)
            except OSError:
                continue
    return newest


def _copy(folder: Path, kind: str, deep: bool = False) -> CachedCopy:
    partial = folder.name.startswith(".")
    _, meta = _marker(folder)
    source = meta.get("source") if meta else None
    return CachedCopy(
        path=folder, kind=kind, name=folder.name,
        source=str(source) if source else None,
        size_bytes=dir_size(folder),
        last_used=_newest_mtime(folder) if partial else _last_used(folder),
        problem="left by an interrupted conversion" if partial else check_copy(folder, deep),
        in_use=is_in_use(folder), partial=partial,
    )


def _holds_files(folder: Path) -> bool:
    return any(p.is_file() and not p.name.startswith(".") for p in folder.iterdir())


def list_copies(root: Path | None = None, deep: bool = False) -> list[CachedCopy]:
    """Every converted copy in the cache folder, sorted by kind and name (``deep``: their
    content checked against the hashes recorded when they were built)."""
    root = root or cache_root()
    if not root.is_dir():
        return []
    copies = []
    for top in sorted(root.iterdir()):
        if not top.is_dir() or top.is_symlink() or top.name.startswith("."):
            continue
        if _holds_files(top):  # a converter that keeps one copy right at the top
            copies.append(_copy(top, "", deep))
            continue
        for sub in sorted(top.iterdir()):
            if sub.is_dir() and not sub.is_symlink():
                copies.append(_copy(sub, top.name, deep))
    return copies


def protected_folders() -> dict[str, Path]:
    """Folders that hold the user's own things, which a cache clear never removes."""
    from slmchat import paths

    # The most specific first, so a refusal names the folder that matters.
    return {"runs": paths.runs_dir().resolve(), "models": paths.models_dir().resolve(),
            "config": paths.config_dir().resolve(), "data": paths.data_dir().resolve()}


def refusal(copy: CachedCopy, protected: dict[str, Path], root: Path) -> str | None:
    """Why ``copy`` must not be removed by a cache clear (None when it may).

    Guards against folders pointed at one another (SLMCHAT_CACHE_DIR set to the data
    folder, say): a copy that is or holds a protected folder, or lies in the config, runs
    or models folder, is refused; one in the data folder only when the cache folder
    itself is a subfolder of it.
    """
    path, root = copy.path.resolve(), root.resolve()
    if root not in path.parents:
        return "outside the cache folder"
    for what, guarded in protected.items():
        if path == guarded or path in guarded.parents:
            return f"holds the {what} folder {guarded}"
        if guarded in path.parents and not (what == "data" and guarded in root.parents):
            return f"lies in the {what} folder {guarded}"
    if copy.in_use:
        return "in use by a running slmchat"
    return None


@dataclass(frozen=True)
class ClearResult:
    removed: list[CachedCopy]
    skipped: list[tuple[CachedCopy, str]]

    @property
    def freed_bytes(self) -> int:
        return sum(c.size_bytes for c in self.removed)


def select(copies: Iterable[CachedCopy], names: Iterable[str] = (),
           older_than_days: float | None = None, now: float | None = None) -> list[CachedCopy]:
    """The copies a clear would consider: by name (``name`` or ``kind/name``; all when
    none is given) and by last use older than ``older_than_days``."""
    wanted = set(names)
    now = time.time() if now is None else now
    chosen = []
    for c in copies:
        if wanted and not {c.name, c.label, str(c.path)} & wanted:
            continue
        if older_than_days is not None and now - c.last_used < older_than_days * DAY_S:
            continue
        chosen.append(c)
    return chosen


def clear(copies: Iterable[CachedCopy], dry_run: bool = False,
          root: Path | None = None, now: float | None = None) -> ClearResult:
    """Remove ``copies`` (see ``select``), skipping those in use or protected."""
    root = root or cache_root()
    protected = protected_folders()
    now = time.time() if now is None else now
    removed: list[CachedCopy] = []
    skipped: list[tuple[CachedCopy, str]] = []
    for copy in copies:
        why = refusal(copy, protected, root)
        if why is None and copy.partial and now - copy.last_used < PARTIAL_GRACE_S:
            why = "a conversion may still be writing it (less than an hour old)"
        if why:
            skipped.append((copy, why))
            continue
        if dry_run:
            removed.append(copy)
            continue
        with exclusive_use(copy.path) as free:
            if not free:
                skipped.append((copy, "in use by a running slmchat"))
                continue
            shutil.rmtree(copy.path, ignore_errors=True)
            in_use_lock(copy.path).unlink(missing_ok=True)
        if copy.path.exists():
            skipped.append((copy, "could not be removed (permissions?)"))
        else:
            removed.append(copy)
    return ClearResult(removed, skipped)


def copy_adapter(copy: CachedCopy) -> str | None:
    """The LoRA adapter a copy was merged from (a fine-tuned model's copy), when its
    marker says: its ``source`` is then the base the adapter was trained on."""
    _, meta = _marker(copy.path)
    adapter = meta.get("adapter") if meta else None
    return str(adapter) if adapter else None
