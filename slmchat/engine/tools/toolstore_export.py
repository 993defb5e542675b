"""Put an exported GGUF where Ollama and LM Studio look for models.

Ollama (as its ``server/create.go`` + ``manifest/`` write a model): content-addressed
blobs ``blobs/sha256-HEX`` (the GGUF as ``application/vnd.ollama.image.model``, the Go
``TEMPLATE`` as ``.template``, stop strings as JSON ``.params``, ``SYSTEM`` as ``.system``,
a ``ConfigV2`` JSON as the ``application/vnd.docker.container.image.v1+json`` config) and
a schema-2 manifest at ``manifests/HOST/NAMESPACE/MODEL/TAG``; ``ollama run NAME`` reads
exactly that (``server/images.go: GetModel``). A Modelfile with the same TEMPLATE,
PARAMETERs and SYSTEM is written beside a ``--gguf`` file for ``ollama create``.

LM Studio: ``MODELS/PUBLISHER/REPO/FILE.gguf`` (the folder it scans).

Blobs and files are written under temp names and renamed; the manifest comes last, so a
half-written export is never listed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmchat.engine.fsutil import atomic_file
from slmchat.errors import InvalidParameterError

MEDIA_MODEL = "application/vnd.ollama.image.model"
MEDIA_TEMPLATE = "application/vnd.ollama.image.template"
MEDIA_PARAMS = "application/vnd.ollama.image.params"
MEDIA_SYSTEM = "application/vnd.ollama.image.system"
MEDIA_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DEFAULT_HOST, DEFAULT_NAMESPACE, DEFAULT_TAG = "registry.ollama.ai", "library", "latest"
_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,79}$")


@dataclass(frozen=True)
class OllamaExtras:
    """What goes beside the weights: Go template, stop strings, default system prompt."""

    template: str | None = None
    stops: list[str] = field(default_factory=list)
    system: str | None = None


def parse_ollama_name(name: str) -> tuple[str, str, str, str]:
    """``[HOST/][NAMESPACE/]MODEL[:TAG]`` -> its four parts, with Ollama's defaults and
    its rules for each part (types/model/name.go: letters, digits, ``_ - .``; no ``.``
    in a namespace)."""
    text = name.strip()
    tag = DEFAULT_TAG
    if text.rfind(":") > text.rfind("/"):
        text, tag = text.rsplit(":", 1)
    parts = text.split("/")
    if len(parts) > 3 or not all(parts):
        raise InvalidParameterError(f"not an Ollama model name: {name!r} (use NAME or NAME:TAG)")
    model = parts[-1]
    namespace = parts[-2] if len(parts) > 1 else DEFAULT_NAMESPACE
    host = parts[0] if len(parts) > 2 else DEFAULT_HOST
    for what, part in (("model", model), ("tag", tag), ("namespace", namespace)):
        if not _PART.match(part) or (what == "namespace" and "." in part):
            raise InvalidParameterError(
                f"not an Ollama model name: {name!r} ({what} {part!r}: letters, digits, "
                "'_', '-' and '.' only)")
    if not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,349}$", host):
        raise InvalidParameterError(f"not an Ollama model name: {name!r} (host {host!r})")
    return host, namespace, model, tag


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _put_blob(root: Path, hexdigest: str, write: Any) -> Path:
    """``blobs/sha256-HEX``, written by ``write(tmp_path)`` unless it is there already
    (Ollama shares a blob between models the same way)."""
    blob = root / "blobs" / f"sha256-{hexdigest}"
    if blob.is_file():
        return blob
    with atomic_file(blob, overwrite=True) as tmp:
        write(tmp)
        tmp.chmod(0o644)
    return blob


def _layer(root: Path, media: str, data: bytes) -> dict[str, Any]:
    hexdigest = hashlib.sha256(data).hexdigest()
    _put_blob(root, hexdigest, lambda tmp: tmp.write_bytes(data))
    return {"mediaType": media, "digest": f"sha256:{hexdigest}", "size": len(data)}


def _model_layer(root: Path, gguf: Path) -> dict[str, Any]:
    hexdigest = _sha256_file(gguf)

    def write(tmp: Path) -> None:
        tmp.unlink()
        try:  # a hard link costs no space when the store is on the same disk
            os.link(gguf, tmp)
        except OSError:
            shutil.copyfile(gguf, tmp)

    _put_blob(root, hexdigest, write)
    return {"mediaType": MEDIA_MODEL, "digest": f"sha256:{hexdigest}",
            "size": gguf.stat().st_size}


def _json_bytes(value: Any) -> bytes:
    # Go's json.Encoder output: compact, a trailing newline.
    return (json.dumps(value, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def human_number(n: int) -> str:
    """Ollama's parameter size label (format.HumanNumber): 135M, 1.5B, 494.03M."""
    for div, unit, decimals in ((1e9, "B", 1), (1e6, "M", 2)):
        if n >= div:
            value = n / div
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.{decimals}f}{unit}"
    return f"{n / 1e3:.0f}K" if n >= 1000 else str(n)


def write_ollama(gguf: Path, name: str, extras: OllamaExtras, *, root: Path,
                 family: str, n_params: int, file_type: str, overwrite: bool = False) -> Path:
    """Write ``gguf`` into the Ollama store at ``root`` as ``name``; the manifest's path."""
    host, namespace, model, tag = parse_ollama_name(name)
    manifest_path = root / "manifests" / host / namespace / model / tag
    if manifest_path.exists() and not overwrite:
        raise InvalidParameterError(f"Ollama already has a model named {name!r} "
                                    f"({manifest_path}; use --overwrite)")
    layers = [_model_layer(root, gguf)]
    if extras.template:
        layers.append(_layer(root, MEDIA_TEMPLATE, extras.template.encode()))
    if extras.system:
        layers.append(_layer(root, MEDIA_SYSTEM, extras.system.encode()))
    if extras.stops:
        layers.append(_layer(root, MEDIA_PARAMS, _json_bytes({"stop": extras.stops})))
    config = {"model_format": "gguf", "model_family": family, "model_families": [family],
              "model_type": human_number(n_params), "file_type": file_type.upper(),
              "architecture": "amd64", "os": "linux"}
    config_layer = _layer(root, MEDIA_CONFIG, _json_bytes(config))
    manifest = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": config_layer,
                "layers": layers}
    with atomic_file(manifest_path, overwrite=True) as tmp:
        tmp.write_bytes(_json_bytes(manifest))
        tmp.chmod(0o644)
    return manifest_path


def _quoted(text: str) -> str:
    """A Modelfile value in triple quotes (its parser ends one at the next \"\"\")."""
    if '"""' in text:
        raise InvalidParameterError('the template contains """ and cannot go in a Modelfile')
    return f'"""{text}"""'


def modelfile_text(gguf: Path, extras: OllamaExtras) -> str:
    """The Modelfile for ``ollama create NAME -f Modelfile`` with the same layers."""
    lines = [f"FROM {gguf.resolve()}"]
    if extras.template:
        lines.append(f"TEMPLATE {_quoted(extras.template)}")
    lines += [f"PARAMETER stop {json.dumps(s)}" for s in extras.stops]
    if extras.system:
        lines.append(f"SYSTEM {_quoted(extras.system)}")
    return "\n".join(lines) + "\n"


def lm_studio_target(root: Path, repo: str, file_name: str) -> Path:
    """``root/PUBLISHER/REPO/FILE``: LM Studio lists a model only two folders deep."""
    parts = repo.strip("/").split("/")
    if len(parts) != 2 or not all(p and p not in (".", "..") and _PART.match(p) for p in parts):
        raise InvalidParameterError(f"--lm-studio wants PUBLISHER/REPO, not {repo!r}")
    return root / parts[0] / parts[1] / file_name


def write_lm_studio(gguf: Path, target: Path, overwrite: bool = False) -> Path:
    """Copy (or hard-link) ``gguf`` to ``target`` in LM Studio's models folder."""
    with atomic_file(target, overwrite) as tmp:
        tmp.unlink()
        try:
            os.link(gguf, tmp)
        except OSError:
            shutil.copyfile(gguf, tmp)
    return target
