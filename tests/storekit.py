"""Fake model stores of other tools (Ollama, LM Studio, llama.cpp, GPT4All) in a temp
folder, with small GGUF files written by the ``gguf`` library."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

CHAT_TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"


def write_gguf(path: Path, arch: str = "llama", name: str = "tiny", layers: int = 2,
               hidden: int = 16, context: int = 128, template: bool = True) -> Path:
    """A small metadata-complete GGUF (one 4x4 tensor per layer): enough for discovery."""
    import gguf

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(name)
    writer.add_context_length(context)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    if template:
        writer.add_chat_template(CHAT_TEMPLATE)
    for i in range(layers):
        writer.add_tensor(f"blk.{i}.attn_q.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ollama_blob(root: Path, data: bytes) -> str:
    """Store ``data`` as Ollama does (blobs/sha256-HEX); returns the digest sha256:HEX."""
    hexd = _digest(data)
    blobs = root / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    (blobs / f"sha256-{hexd}").write_bytes(data)
    return f"sha256:{hexd}"


def ollama_model(root: Path, name: str, gguf_file: Path, *, params: dict | None = None,
                 system: str | None = None, namespace: str = "library",
                 host: str = "registry.ollama.ai") -> Path:
    """A manifest for ``name`` ("model:tag") whose model layer is ``gguf_file``."""
    model, tag = name.split(":")
    data = gguf_file.read_bytes()
    layers = [{"mediaType": "application/vnd.ollama.image.model",
               "digest": ollama_blob(root, data), "size": len(data)}]
    extra = {"application/vnd.ollama.image.template": "{{ .Prompt }}"}
    if params is not None:
        extra["application/vnd.ollama.image.params"] = json.dumps(params)
    if system is not None:
        extra["application/vnd.ollama.image.system"] = system
    for media, text in extra.items():
        raw = text.encode()
        layers.append({"mediaType": media, "digest": ollama_blob(root, raw), "size": len(raw)})
    config = ollama_blob(root, b'{"model_format":"gguf"}')
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": config, "size": 23},
        "layers": layers,
    }
    path = root / "manifests" / host / namespace / model / tag
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    return path


def llama_cpp_download(cache: Path, repo: str, tag: str, gguf_file: Path,
                       rfilename: str | None = None) -> Path:
    """What ``llama-cli -hf REPO:TAG`` leaves in its cache: manifest + ORG_REPO_FILE."""
    rfilename = rfilename or gguf_file.name
    cache.mkdir(parents=True, exist_ok=True)
    manifest = cache / f"manifest={repo.replace('/', '=')}={tag}.json"
    manifest.write_text(json.dumps({"ggufFile": {"rfilename": rfilename, "size": 1}}))
    target = cache / f"{repo}_{rfilename}".replace("/", "_")
    shutil.copy(gguf_file, target)
    return target
