"""Where other local-model tools keep their models, and the names those tools use.

Read-only and offline: manifests and folder names are read, nothing is written, moved
or fetched. Covered: Ollama (``$OLLAMA_MODELS`` or ``~/.ollama/models``: a manifest per
``name:tag`` whose ``application/vnd.ollama.image.model`` layer is a content-addressed
GGUF blob), LM Studio (``~/.lmstudio/models``, ``~/.cache/lm-studio/models`` and the
``downloadsFolder`` of its settings), llama.cpp's download cache (``$LLAMA_CACHE`` or
``~/.cache/llama.cpp``: ``ORG_REPO_FILE.gguf`` files named by
``manifest=ORG=REPO=TAG.json``) and GPT4All's model folder (its ``modelPath`` setting,
``~/.local/share/nomic.ai/GPT4All``, ``~/.cache/gpt4all``).

This module only says *where* models are and what they are called; discovery.py reads
the GGUF metadata, and ``slmchat export --ollama/--lm-studio`` (tools/toolstore_export.py)
writes into the folders ``ollama_write_root``/``lm_studio_write_root`` name. A store
that cannot be read yields entries with a ``problem`` (broken manifest, missing blob),
never an exception.
"""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmchat.engine.model.files import is_gguf_file

OLLAMA_MODEL = "application/vnd.ollama.image.model"
OLLAMA_MEDIA = {
    "application/vnd.ollama.image.template": "template",
    "application/vnd.ollama.image.system": "system",
    "application/vnd.ollama.image.params": "params",
    "application/vnd.ollama.image.adapter": "adapter",
    "application/vnd.ollama.image.projector": "projector",
    "application/vnd.ollama.image.license": "license",
}
OLLAMA_REGISTRY = "registry.ollama.ai"
_DIGEST = re.compile(r"^sha256[:-]([0-9a-f]{64})$")
_MAX_MANIFEST = 1 << 20  # a manifest is a few hundred bytes; refuse to read huge files
_MAX_SMALL_LAYER = 64 << 10  # params / system layers worth showing

# Environment variable: look for the tools' folders under this home instead of yours.
TOOLS_HOME_ENV = "SLMCHAT_TOOLS_HOME"


@dataclass(frozen=True)
class ToolModel:
    """One model as another tool names it. ``path`` is the GGUF file (None if broken)."""

    source: str  # ollama | llama.cpp
    name: str  # the tool's own name, e.g. "qwen2.5:0.5b"
    path: Path | None
    where: Path  # the manifest or file that describes it (shown when broken)
    problem: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolRoots:
    """The folders each tool uses on this machine (only those that exist)."""

    ollama: list[Path] = field(default_factory=list)
    lm_studio: list[Path] = field(default_factory=list)
    llama_cpp: list[Path] = field(default_factory=list)
    gpt4all: list[Path] = field(default_factory=list)


def _existing(paths: list[Path]) -> list[Path]:
    seen: set[str] = set()
    out: list[Path] = []
    for p in paths:
        try:
            key = str(p.expanduser().resolve())
            ok = p.expanduser().is_dir()
        except OSError:
            continue
        if ok and key not in seen:
            seen.add(key)
            out.append(p.expanduser())
    return out


def _lm_studio_settings_dirs(home: Path) -> list[Path]:
    """``downloadsFolder`` from LM Studio's settings.json, if it moved its models."""
    out: list[Path] = []
    for settings in (home / ".lmstudio" / "settings.json",
                     home / ".cache" / "lm-studio" / "settings.json"):
        try:
            if settings.is_file() and settings.stat().st_size < _MAX_MANIFEST:
                value = json.loads(settings.read_text(encoding="utf-8")).get("downloadsFolder")
                if isinstance(value, str) and value:
                    out.append(Path(value))
        except (OSError, ValueError, AttributeError):
            continue
    return out


def _gpt4all_setting(config_home: Path) -> list[Path]:
    """``modelPath`` from GPT4All.ini (the desktop app's download path setting)."""
    ini = config_home / "nomic.ai" / "GPT4All.ini"
    parser = configparser.ConfigParser(interpolation=None)
    try:
        if not ini.is_file() or ini.stat().st_size > _MAX_MANIFEST:
            return []
        parser.read_string(ini.read_text(encoding="utf-8", errors="replace"))
    except (OSError, configparser.Error):
        return []
    for section in [*parser.sections(), parser.default_section]:
        value = parser.get(section, "modelPath", fallback="")
        if value:
            return [Path(value.strip().strip('"'))]
    return []


def tool_roots(env: Mapping[str, str] | None = None, home: Path | None = None) -> ToolRoots:
    """Each tool's model folders that exist here. ``home`` (or ``$SLMCHAT_TOOLS_HOME``)
    replaces your home folder; the XDG variables then no longer apply."""
    env = os.environ if env is None else env
    xdg = home is None and not env.get(TOOLS_HOME_ENV)
    home = home or Path(env.get(TOOLS_HOME_ENV) or Path.home()).expanduser()
    cache = Path(env["XDG_CACHE_HOME"]) if xdg and env.get("XDG_CACHE_HOME") else home / ".cache"
    data = (Path(env["XDG_DATA_HOME"]) if xdg and env.get("XDG_DATA_HOME")
            else home / ".local" / "share")
    config = (Path(env["XDG_CONFIG_HOME"]) if xdg and env.get("XDG_CONFIG_HOME")
              else home / ".config")
    mac_support = home / "Library" / "Application Support"
    ollama = [Path(env["OLLAMA_MODELS"])] if env.get("OLLAMA_MODELS") else [
        home / ".ollama" / "models"]
    if xdg and not env.get("OLLAMA_MODELS"):
        ollama.append(Path("/usr/share/ollama/.ollama/models"))  # Linux service install
    llama = [Path(env["LLAMA_CACHE"])] if env.get("LLAMA_CACHE") else [
        cache / "llama.cpp", home / "Library" / "Caches" / "llama.cpp"]
    return ToolRoots(
        ollama=_existing(ollama),
        lm_studio=_existing([*_lm_studio_settings_dirs(home), home / ".lmstudio" / "models",
                             home / ".cache" / "lm-studio" / "models"]),
        llama_cpp=_existing(llama),
        gpt4all=_existing([*_gpt4all_setting(config), data / "nomic.ai" / "GPT4All",
                           mac_support / "nomic.ai" / "GPT4All", cache / "gpt4all"]),
    )


def ollama_write_root(env: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    """The Ollama models folder an export writes into (it may not exist yet): the one
    Ollama itself uses, ``$OLLAMA_MODELS`` or ``~/.ollama/models`` (server/envconfig)."""
    env = os.environ if env is None else env
    if env.get("OLLAMA_MODELS"):
        return Path(env["OLLAMA_MODELS"]).expanduser()
    home = home or Path(env.get(TOOLS_HOME_ENV) or Path.home()).expanduser()
    return home / ".ollama" / "models"


def lm_studio_write_root(env: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    """LM Studio's models folder: the first that exists (its settings' downloadsFolder
    first), else ``~/.lmstudio/models``, where current versions keep them."""
    env = os.environ if env is None else env
    found = tool_roots(env, home).lm_studio
    if found:
        return found[0]
    home = home or Path(env.get(TOOLS_HOME_ENV) or Path.home()).expanduser()
    return home / ".lmstudio" / "models"


def file_kind(path: Path) -> str | None:
    """None for a regular file; else what ``path`` is, in words. Checked before reading:
    a FIFO would block the scan and a device (/dev/zero) never ends."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror or type(exc).__name__})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "is a FIFO, not a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a file"
    return "is a folder, not a file" if stat.S_ISDIR(mode) else "is not a regular file"


# --- Ollama ---


def ollama_name(parts: tuple[str, ...]) -> str:
    """Ollama's short name for manifests/HOST/NAMESPACE/MODEL/TAG (what ``ollama list``
    prints): ``qwen2.5:0.5b``, ``user/model:tag``, ``hf.co/org/repo:Q4_K_M``."""
    *repo, tag = parts
    if len(repo) == 3 and repo[0] == OLLAMA_REGISTRY:
        repo = repo[2:] if repo[1] == "library" else repo[1:]
    return f"{'/'.join(repo)}:{tag}"


def _blob(root: Path, digest: str) -> Path | None:
    match = _DIGEST.match(str(digest))
    return root / "blobs" / f"sha256-{match.group(1)}" if match else None


def _small_layer(root: Path, layer: dict[str, Any]) -> str | None:
    blob = _blob(root, str(layer.get("digest", "")))
    try:
        if blob is None or not blob.is_file() or blob.stat().st_size > _MAX_SMALL_LAYER:
            return None
        return blob.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _ollama_manifest(root: Path, manifest: Path, name: str) -> ToolModel:
    def broken(problem: str) -> ToolModel:
        return ToolModel("ollama", name, None, manifest, problem)

    try:
        if (kind := file_kind(manifest)) is not None:
            return broken(f"broken manifest: {kind}")
        if manifest.stat().st_size > _MAX_MANIFEST:
            return broken("broken manifest: implausibly large")
        data = json.loads(manifest.read_text(encoding="utf-8"))
        layers = data.get("layers")
        if not isinstance(layers, list):
            return broken("broken manifest: no layers")
    except (OSError, ValueError, AttributeError) as exc:
        return broken(f"broken manifest: {type(exc).__name__}")
    layers = [x for x in layers if isinstance(x, dict)]
    models = [x for x in layers if x.get("mediaType") == OLLAMA_MODEL]
    if not models:
        return broken("manifest names no model layer")
    layer = models[0]
    blob = _blob(root, str(layer.get("digest", "")))
    if blob is None:
        return broken(f"broken manifest: bad digest {str(layer.get('digest'))[:24]!r}")
    extra: dict[str, Any] = {"manifest": str(manifest), "blob": blob.name}
    for other in layers:
        kind = OLLAMA_MEDIA.get(str(other.get("mediaType")))
        if kind in ("template", "adapter", "projector"):
            extra[kind] = True
        elif kind == "system":
            extra["system"] = _small_layer(root, other)
        elif kind == "params":
            with contextlib.suppress(ValueError):
                extra["params"] = json.loads(_small_layer(root, other) or "{}")
    if (kind := file_kind(blob)) is not None:
        return ToolModel("ollama", name, None, manifest, f"blob {blob.name[:19]}… {kind}",
                         extra)
    size = layer.get("size")
    try:
        actual = blob.stat().st_size
    except OSError as exc:
        return ToolModel("ollama", name, None, manifest,
                         f"blob {blob.name[:19]}… unreadable ({exc.strerror})", extra)
    if isinstance(size, int) and actual < size:
        return ToolModel("ollama", name, None, manifest,
                         f"blob {blob.name[:19]}… incomplete ({actual} of {size} bytes)", extra)
    if not is_gguf_file(blob):
        return ToolModel("ollama", name, None, manifest, "model layer is not a GGUF file",
                         extra)
    problem = "uses an Ollama adapter layer, which is not applied here" if extra.get(
        "adapter") else None
    return ToolModel("ollama", name, blob, manifest, problem, extra)


def ollama_models(root: Path) -> list[ToolModel]:
    """Every ``name:tag`` in an Ollama models folder (``manifests/`` + ``blobs/``)."""
    manifests = root / "manifests"
    found: list[ToolModel] = []
    if not manifests.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(manifests):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fname in sorted(filenames):
            if fname.startswith("."):
                continue
            manifest = Path(dirpath) / fname
            parts = manifest.relative_to(manifests).parts
            found.append(_ollama_manifest(root, manifest, ollama_name(parts)))
    return found


def ollama_names_for(blob: Path) -> list[str]:
    """The ``name:tag``s whose model layer is ``blob`` (a file in an Ollama blobs folder)."""
    root = blob.parent.parent
    if blob.parent.name != "blobs" or not (root / "manifests").is_dir():
        return []
    return [m.name for m in ollama_models(root) if m.path == blob]


# --- llama.cpp ---


def llama_cpp_models(root: Path) -> list[ToolModel]:
    """Files named by llama.cpp's ``manifest=ORG=REPO=TAG.json`` (``-hf`` downloads).

    The model file is ``ORG_REPO_FILE`` ("/" made "_") next to the manifest; its name is
    what ``-hf`` took: ``org/repo:tag`` (``org/repo`` for the tag ``latest``)."""
    found: list[ToolModel] = []
    for manifest in sorted(root.glob("manifest=*.json")):
        parts = manifest.stem.split("=")[1:]
        if len(parts) < 3:
            found.append(ToolModel("llama.cpp", manifest.name, None, manifest,
                                   "broken manifest: unexpected file name"))
            continue
        repo, tag = "/".join(parts[:-1]), parts[-1]
        name = repo if tag == "latest" else f"{repo}:{tag}"
        try:
            if (kind := file_kind(manifest)) is not None:
                raise ValueError(kind)
            if manifest.stat().st_size > _MAX_MANIFEST:
                raise ValueError("implausibly large")
            data = json.loads(manifest.read_text(encoding="utf-8"))
            rfilename = str(data["ggufFile"]["rfilename"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            found.append(ToolModel("llama.cpp", name, None, manifest,
                                   f"broken manifest: {type(exc).__name__}"))
            continue
        path = root / f"{repo}_{rfilename}".replace("/", "_")
        extra: dict[str, Any] = {"manifest": str(manifest)}
        if isinstance(data.get("mmprojFile"), dict):
            extra["projector"] = True
        if (kind := file_kind(path)) is not None:
            found.append(ToolModel("llama.cpp", name, None, manifest,
                                   f"file {path.name} {kind}", extra))
        else:
            found.append(ToolModel("llama.cpp", name, path, manifest, None, extra))
    return found
