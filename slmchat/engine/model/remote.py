"""Remote profiles: a served engine (vLLM, SGLang, llama-server, Ollama, another
``slmchat serve``) named in settings.toml, and the models it lists.

A remote model is ``ModelSpec.path = "remote://NAME/MODEL"``: the profile's name and the
server's model id, never its address or key, so a stored spec (a conversation's model,
the recent list) still means the same after the profile's URL changes. The profiles are
registered once by whoever read the settings (``use_profiles``); the engine does not read
settings.toml. A profile stores the *name* of the environment variable holding the key
(``api_key_env``); the key is read from the environment for each request and is never
written anywhere.

Nothing here opens a connection unless a profile exists: ``list_models`` is the only
network call, and ``remote_entries`` calls it once per configured profile.
"""

from __future__ import annotations

import ipaddress
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from slmchat.errors import ModelLoadError

RemoteKind = Literal["openai", "ollama"]
KINDS: tuple[str, ...] = ("openai", "ollama")
PREFIX = "remote://"
FORMAT = "remote"  # discovery's format (and source) for a remote model
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LIST_TIMEOUT_S = 5.0  # listing models: a switcher must not wait long on a dead host


@dataclass(frozen=True)
class RemoteProfile:
    """One ``[[remote]]`` entry of settings.toml (no key: only the variable's name)."""

    name: str
    base_url: str
    api_key_env: str | None = None
    kind: RemoteKind = "openai"
    models: tuple[str, ...] = ()  # only these of the server's models are listed
    timeout_s: float = 120.0  # the longest wait for the next bytes of a reply

    @property
    def host(self) -> str:
        """``host:port`` of the endpoint (no credentials, no path): what provenance and the
        app's notice name."""
        parts = urlsplit(self.base_url)
        host = parts.hostname or "?"
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{parts.port}" if parts.port else host

    @property
    def loopback(self) -> bool:
        """Whether the endpoint is this machine (nothing leaves it)."""
        return is_loopback(urlsplit(self.base_url).hostname or "")

    @property
    def api_base(self) -> str:
        """The URL the API paths hang off: ``.../v1`` for the OpenAI kind (added when the
        profile gives only the server's root), the root for Ollama."""
        url = self.base_url.rstrip("/")
        if self.kind == "openai" and not urlsplit(url).path.strip("/"):
            return url + "/v1"
        if self.kind == "ollama" and url.endswith("/api"):
            return url[: -len("/api")]
        return url

    def api_key(self) -> str | None:
        """The key from the environment now (None: no variable named, or it is unset)."""
        if not self.api_key_env:
            return None
        return os.environ.get(self.api_key_env) or None

    def key_problem(self) -> str | None:
        if self.api_key_env and not os.environ.get(self.api_key_env):
            return f"{self.name}: the environment variable {self.api_key_env} (api_key_env) is not set"
        return None

    def headers(self) -> dict[str, str]:
        key = self.api_key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def allows(self, model: str) -> bool:
        return not self.models or model in self.models


@dataclass(frozen=True)
class RemoteModel:
    """One model a server lists."""

    id: str
    context_length: int = 0
    size_bytes: int = 0
    n_params: int = 0
    owned_by: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def is_remote_kind(value: object) -> bool:
    """Whether a model's kind (ModelInfo.kind, a provenance record's "kind") or a
    discovery entry's format says it is a remote profile's model: the one spelling."""
    return value == FORMAT


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_is_loopback(hostport: str) -> bool:
    """``RemoteProfile.host`` ("host:port", "[::1]:8000") is this machine."""
    host = hostport.rsplit("]", 1)[0].lstrip("[") if hostport.startswith("[") \
        else hostport.rsplit(":", 1)[0] if hostport.count(":") == 1 else hostport
    return is_loopback(host)


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a profile's base_url (None: it can)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError as exc:
        return f"base_url {url!r} is not a URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"base_url {url!r} must start with http:// or https:// and name a host"
    if parts.username or parts.password:
        return "base_url must not hold credentials; name an environment variable in api_key_env"
    if parts.query or parts.fragment:
        return f"base_url {url!r} must not have a query or fragment"
    return None


# -- the registry of configured profiles ----------------------------------------------

_LOCK = threading.Lock()
_PROFILES: dict[str, RemoteProfile] = {}


def use_profiles(profiles: list[RemoteProfile] | tuple[RemoteProfile, ...]) -> None:
    """Make ``profiles`` the configured ones (the settings were read)."""
    with _LOCK:
        _PROFILES.clear()
        _PROFILES.update({p.name: p for p in profiles})


def profiles() -> list[RemoteProfile]:
    with _LOCK:
        return list(_PROFILES.values())


def profile(name: str) -> RemoteProfile:
    with _LOCK:
        found = _PROFILES.get(name)
    if found is None:
        known = ", ".join(sorted(_PROFILES)) or "none configured"
        raise ModelLoadError(f"no remote profile named {name!r} in settings.toml ({known}; "
                             "`slmchat remote add` writes one)")
    return found


# -- spec paths -------------------------------------------------------------------------

def remote_path(profile_name: str, model: str) -> str:
    return f"{PREFIX}{profile_name}/{model}"


def parse_path(path: str) -> tuple[str, str] | None:
    """(profile name, model id) of a remote spec path, else None."""
    if not path.startswith(PREFIX):
        return None
    name, _, model = path[len(PREFIX):].partition("/")
    return (name, model) if name and model else None


def is_remote(path: str) -> bool:
    return parse_path(path) is not None


def resolve_typed(text: str) -> str | None:
    """``NAME:model`` (or ``NAME: model``) with NAME a configured profile: its spec path.
    A remote path is returned as it is; None for anything else."""
    if parse_path(text):
        return text
    name, sep, model = text.partition(":")
    model = model.strip()
    if not sep or not model:
        return None
    with _LOCK:
        known = name in _PROFILES
    return remote_path(name, model) if known else None


def label(profile_name: str, model: str) -> str:
    """How the app and ``slmchat models`` show a remote model."""
    return f"{profile_name}: {model}"


# -- listing ----------------------------------------------------------------------------

def list_models(prof: RemoteProfile, timeout_s: float = LIST_TIMEOUT_S) -> list[RemoteModel]:
    """The models ``prof``'s server lists (``/v1/models`` or Ollama's ``/api/tags``),
    filtered by the profile's ``models``. RemoteError (one line naming the profile) when
    it cannot be reached, refuses the key or answers something else."""
    from slmchat.engine.model import remote_http

    if prof.kind == "ollama":
        data = remote_http.get_json(prof, "/api/tags", timeout_s)
        rows = data.get("models") if isinstance(data, dict) else None
        found = [_ollama_model(m) for m in rows or [] if isinstance(m, dict)]
    else:
        data = remote_http.get_json(prof, "/models", timeout_s)
        rows = data.get("data") if isinstance(data, dict) else None
        if rows is None:
            raise remote_http.RemoteError(f"{prof.name}: {prof.api_base}/models did not answer "
                                          "an OpenAI model list (is base_url the API root, e.g. "
                                          "http://host:8000/v1?)")
        found = [_openai_model(m) for m in rows if isinstance(m, dict)]
    return [m for m in found if m.id and prof.allows(m.id)]


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _openai_model(row: dict[str, Any]) -> RemoteModel:
    # vLLM: max_model_len; llama-server: meta.n_ctx_train; slmchat serve: context_length
    meta: dict[str, Any] = row["meta"] if isinstance(row.get("meta"), dict) else {}
    ctx = _int(row.get("max_model_len")) or _int(row.get("context_length")) or \
        _int(meta.get("n_ctx_train")) or _int(meta.get("n_ctx"))
    return RemoteModel(id=str(row.get("id") or ""), context_length=ctx,
                       size_bytes=_int(meta.get("size")), n_params=_int(meta.get("n_params")),
                       owned_by=str(row.get("owned_by") or ""))


def _ollama_model(row: dict[str, Any]) -> RemoteModel:
    details: dict[str, Any] = row["details"] if isinstance(row.get("details"), dict) else {}
    return RemoteModel(id=str(row.get("model") or row.get("name") or ""),
                       size_bytes=_int(row.get("size")),
                       extra={"parameter_size": details.get("parameter_size", ""),
                              "quantization": details.get("quantization_level", "")})
