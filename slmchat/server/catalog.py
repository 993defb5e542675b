"""Model names: the loaded model, the local models that can be loaded, and swaps.

The loaded model answers to its display name, its path, and (for Ollama clients)
``NAME:latest``. Other local models (slmchat.engine.model.discovery) can be asked for by
name; with swapping allowed the request loads that model first (``Catalog.switch``, the
one swap path), one load at a time, through the same FIFO gate as generation. Any other
name is a 404 that lists what can be loaded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from slmchat.engine.model.discovery import ModelEntry, inspect_folder, inspect_gguf
from slmchat.engine.model.files import is_gguf_file, read_json
from slmchat.engine.model.spec import ModelSpec
from slmchat.engine.session import EngineLike
from slmchat.errors import SlmChatError
from slmchat.server.errors import APIError, shown

Discover = Callable[[], list[ModelEntry]]


def _default_discover() -> list[ModelEntry]:
    from slmchat.engine.model.discovery import discover

    return discover()


def bare(name: str) -> str:
    """Ollama clients append a tag; ``:latest`` means the only version there is."""
    return name[: -len(":latest")] if name.endswith(":latest") else name


@dataclass(frozen=True)
class Choice:
    """What a request's model name resolved to: the loaded model, or one to load first."""

    name: str
    load: ModelSpec | None = None


class Catalog:
    def __init__(self, engine: EngineLike, base: ModelSpec, allow_swap: bool = True,
                 discover: Discover | None = None, ttl_s: float = 30.0) -> None:
        self.engine = engine
        self.base = base
        self.allow_swap = allow_swap
        self._discover = discover or _default_discover
        self._ttl = ttl_s
        self._at = -float("inf")
        self._entries: list[ModelEntry] = []
        self._lock = threading.Lock()
        # The model the server started with stays loadable by name after a swap.
        info = engine.info
        self._home: tuple[str, str] | None = (info.name, info.path) if info else None

    @property
    def current(self) -> str:
        info = self.engine.info
        return info.name if info is not None else "none"

    def _current_names(self) -> set[str]:
        info = self.engine.info
        if info is None:
            return set()
        names = {info.name, info.path}
        if self.base.path == "default" and info.path:
            names.add("default")
        if info.adapter:
            names.add(info.adapter)
        return names

    def entries(self) -> list[ModelEntry]:
        """Local models (discovery is cached: it reads folders and file headers)."""
        with self._lock:
            if time.monotonic() - self._at > self._ttl:
                try:
                    found = self._discover()
                except Exception:  # a broken folder must not break /v1/models
                    found = []
                self._entries = [e for e in found if e.problem is None]
                self._at = time.monotonic()
            return list(self._entries)

    def names(self) -> list[str]:
        """The loaded model first, then every other loadable model."""
        out = [self.current]
        current = self._current_names()
        if self._home is not None and self._home[0] not in out and self._home[1] not in current:
            out.append(self._home[0])
        for entry in self.entries():
            if entry.name in out or entry.name in current or _same_path(entry.path, current):
                continue
            out.append(entry.name)
        return out

    def context_lengths(self) -> dict[str, int]:
        """Context length (tokens) of each name in ``names()`` that has a known one."""
        out: dict[str, int] = {}
        info = self.engine.info
        if info is not None and info.context_length:
            out[info.name] = info.context_length
        for entry in self.entries():
            if entry.context_length and entry.name not in out:
                out[entry.name] = entry.context_length
        return out

    def resolve(self, requested: str | None) -> Choice:
        """The loaded model for an empty or matching name; else a model to load, or 404."""
        name = bare(requested or "")
        if not name or name in self._current_names() or _same_path(name, self._current_names()):
            return Choice(self.current)
        if self._home is not None and name in self._home:
            if not self.allow_swap:
                raise self._no_swap(requested)
            return Choice(self._home[0], self.base)
        for entry in self.entries():
            if name in (entry.name, entry.path) or _same_path(name, {entry.path}):
                if _same_path(entry.path, self._current_names()):
                    return Choice(self.current)
                if not self.allow_swap:
                    raise self._no_swap(requested)
                return Choice(entry.name, self.base.with_(path=entry.path, adapter=None))
        raise APIError(404, f"the model {shown(requested)} does not exist; loadable models: "
                       + ", ".join(self.names()), param="model", code="model_not_found")

    def switch(self, requested: str | None) -> str:
        """Make the model ``requested`` names the loaded one; its name. The one swap
        path: a generation's worker and Ollama's load-only request call it while they
        hold the gate. A 404 for an unknown name, a 400 naming ``model`` when the load
        fails (the model loaded before stays)."""
        choice = self.resolve(requested)
        if choice.load is None:
            return choice.name
        try:
            self.engine.load(choice.load)
        except SlmChatError as exc:
            raise APIError(400, str(exc), param="model") from None
        return self.current

    def _no_swap(self, requested: str | None) -> APIError:
        return APIError(404, f"the model {shown(requested)} is not loaded and this server does not "
                        f"swap models (started with --no-swap); it serves {self.current!r}",
                        param="model", code="model_not_found")


def _resolved(path: str) -> Path | None:
    """``path`` made absolute, or None when it cannot name a file: ValueError for a NUL
    byte (a client's model name "a/\\u0000b"), OSError for one too long, RuntimeError
    for a symlink loop."""
    try:
        return Path(path).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        return None


def _same_path(path: str, others: set[str]) -> bool:
    if not path or path == "default" or "/" not in path:
        return False
    resolved = _resolved(path)
    if resolved is None:
        return False
    return any("/" in other and _resolved(other) == resolved for other in others)


_COUNTS: dict[str, int] = {}
_COUNTS_LOCK = threading.Lock()


def param_count(path: str, known: int = 0) -> int:
    """``known`` when it is set, else the parameter count read from the weights' headers
    at ``path`` (safetensors or GGUF; for an ONNX copy, the checkpoint it was built
    from), 0 when they cannot be read. The onnx runtime reports 0 for the model it runs;
    Ollama clients show this number as the model's size. Counted once per path."""
    if known or not path:
        return known
    with _COUNTS_LOCK:
        if path in _COUNTS:
            return _COUNTS[path]
    n = 0
    folder = _resolved(path)
    try:
        if folder is not None and folder.is_file() and is_gguf_file(folder):
            n = inspect_gguf(folder, "server").n_params
        elif folder is not None and folder.is_dir():
            entry = inspect_folder(folder, "server")
            n = entry.n_params if entry is not None else 0
            source = read_json(folder / "slmchat-onnx.json").get("source")
            if not n and isinstance(source, str) and source and _resolved(source) != folder:
                built_from = inspect_folder(Path(source), "server")
                n = built_from.n_params if built_from is not None else 0
    except (OSError, ValueError):
        n = 0
    with _COUNTS_LOCK:
        _COUNTS[path] = n
    return n
