"""Other tools' model stores, each shape built in tmp_path: Ollama, LM Studio, llama.cpp,
GPT4All. Broken manifests and missing blobs are listed with a reason, never raised."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from slmchat.engine.model.discovery import ModelEntry, discover, scan_tool_stores
from slmchat.engine.model.files import resolve_source
from slmchat.engine.model.spec import ModelSpec
from slmchat.engine.model.toolstores import ollama_name, tool_roots
from slmchat.errors import ModelLoadError
from tests.storekit import llama_cpp_download, ollama_blob, ollama_model, write_gguf


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under root with its size and mtime: to prove a scan wrote nothing."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            st = (Path(dirpath) / f).lstat()
            out[str(Path(dirpath) / f)] = (st.st_size, st.st_mtime_ns)
    return out


def _by(entries: list[ModelEntry], source: str) -> dict[str, ModelEntry]:
    return {e.name: e for e in entries if e.source == source}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home folder holding one store of every kind, with broken entries."""
    home = tmp_path / "home"
    ggufs = tmp_path / "ggufs"
    qwen = write_gguf(ggufs / "qwen.gguf", name="qwen-tiny", layers=2)
    phi = write_gguf(ggufs / "phi.gguf", arch="phi3", name="phi-tiny", layers=3)
    # Ollama: two tags of one blob, a user model, an hf.co model, and broken ones.
    om = home / ".ollama" / "models"
    ollama_model(om, "qwen2.5:0.5b", qwen, params={"temperature": 0.7, "stop": ["<|im_end|>"]},
                 system="Be brief.")
    ollama_model(om, "qwen2.5:latest", qwen)
    ollama_model(om, "phi:mini", phi, namespace="someone")
    ollama_model(om, "org/repo:Q4_K_M", write_gguf(ggufs / "hf.gguf", arch="phi3", layers=3),
                 host="hf.co", namespace="bartowski")
    bad = om / "manifests" / "registry.ollama.ai" / "library" / "broken" / "latest"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    gone = ollama_model(om, "gone:1b", write_gguf(ggufs / "gone.gguf", name="gone"))
    layer = json.loads(gone.read_text())["layers"][0]["digest"].replace(":", "-")
    (om / "blobs" / layer).unlink()
    nomodel = om / "manifests" / "registry.ollama.ai" / "library" / "nomodel" / "latest"
    nomodel.parent.mkdir(parents=True)
    nomodel.write_text(json.dumps({"schemaVersion": 2, "layers": [
        {"mediaType": "application/vnd.ollama.image.template",
         "digest": ollama_blob(om, b"x"), "size": 1}]}))
    text = ollama_model(om, "text:1b", ggufs / "qwen.gguf")
    manifest = json.loads(text.read_text())
    manifest["layers"][0]["digest"] = ollama_blob(om, b"plain text, not a GGUF")
    manifest["layers"][0]["size"] = 22
    text.write_text(json.dumps(manifest))
    short = ollama_model(om, "short:1b", phi)
    manifest = json.loads(short.read_text())
    manifest["layers"][0]["size"] += 100  # the download stopped early
    short.write_text(json.dumps(manifest))
    # LM Studio: publisher/repo/file, the old cache folder, and a vision projector.
    lms = home / ".lmstudio" / "models" / "lmstudio-community" / "Qwen-GGUF"
    write_gguf(lms / "Qwen-Q4_K_M.gguf", name="qwen-lms")
    write_gguf(lms / "mmproj-Qwen-f16.gguf", arch="clip", name="proj", template=False)
    write_gguf(home / ".cache" / "lm-studio" / "models" / "old" / "repo" / "old.gguf")
    # llama.cpp: two -hf downloads (one the 'latest' tag), a missing file, a broken
    # manifest, a stray file without manifest and a split model.
    lc = home / ".cache" / "llama.cpp"
    llama_cpp_download(lc, "bartowski/Qwen-GGUF", "Q4_K_M", qwen, "Qwen-Q4_K_M.gguf")
    llama_cpp_download(lc, "ggml-org/phi-GGUF", "latest", phi, "sub/phi-f16.gguf")
    (lc / "manifest=ggml-org=gone-GGUF=Q8_0.json").write_text(
        json.dumps({"ggufFile": {"rfilename": "gone.gguf"}}))
    (lc / "manifest=ggml-org=bad-GGUF=Q8_0.json").write_text("[]")
    write_gguf(lc / "stray.gguf", name="stray")
    write_gguf(lc / "big-00001-of-00002.gguf")
    write_gguf(lc / "big-00002-of-00002.gguf")
    # GPT4All: the desktop app's folder.
    write_gguf(home / ".local" / "share" / "nomic.ai" / "GPT4All" / "orca-mini.gguf")
    (home / ".local" / "share" / "nomic.ai" / "GPT4All" / "localdocs_v2.db").write_bytes(b"x")
    return home


def test_ollama_manifests_named_as_ollama_names_them(home: Path) -> None:
    entries = scan_tool_stores(env={}, home=home)
    ollama = _by(entries, "ollama")
    qwen = ollama["qwen2.5:0.5b"]
    assert qwen.format == "gguf" and qwen.problem is None and qwen.architecture == "llama"
    assert qwen.n_layers == 2 and qwen.context_length == 128 and qwen.has_chat_template
    assert qwen.label == "ollama: qwen2.5:0.5b"
    assert Path(qwen.path).parent == home / ".ollama" / "models" / "blobs"
    assert not qwen.path.endswith(".gguf")
    # Both tags point at one blob: one entry, the other tag kept as an alias.
    assert "qwen2.5:latest" not in ollama
    assert qwen.extra["aliases"] == ["qwen2.5:latest"]
    assert "latest" in qwen.search_text
    store = qwen.extra["store"]
    assert store["params"] == {"temperature": 0.7, "stop": ["<|im_end|>"]}
    assert store["system"] == "Be brief." and store["template"] is True
    assert ollama["someone/phi:mini"].architecture == "phi3"
    assert ollama["hf.co/bartowski/org/repo:Q4_K_M"].n_layers == 3


def test_ollama_broken_entries_listed_with_a_reason(home: Path) -> None:
    ollama = _by(scan_tool_stores(env={}, home=home), "ollama")
    assert ollama["broken:latest"].problem == "broken manifest: JSONDecodeError"
    assert ollama["gone:1b"].problem is not None
    assert ollama["gone:1b"].problem.startswith("blob sha256-")
    assert ollama["gone:1b"].problem.endswith("missing")
    assert ollama["nomodel:latest"].problem == "manifest names no model layer"
    assert ollama["text:1b"].problem == "model layer is not a GGUF file"
    assert "incomplete" in (ollama["short:1b"].problem or "")
    # A broken entry points at its manifest, so the user can find it.
    assert ollama["broken:latest"].path.endswith("library/broken/latest")


def test_lm_studio_llama_cpp_and_gpt4all(home: Path) -> None:
    entries = scan_tool_stores(env={}, home=home)
    lms = _by(entries, "lm-studio")
    assert lms["lmstudio-community/Qwen-GGUF/Qwen-Q4_K_M.gguf"].problem is None
    proj = lms["lmstudio-community/Qwen-GGUF/mmproj-Qwen-f16.gguf"]
    assert proj.problem == "a vision projector (mmproj), not a language model"
    assert "old/repo/old.gguf" in lms
    lc = _by(entries, "llama.cpp")
    assert lc["bartowski/Qwen-GGUF:Q4_K_M"].problem is None
    assert Path(lc["bartowski/Qwen-GGUF:Q4_K_M"].path).name == (
        "bartowski_Qwen-GGUF_Qwen-Q4_K_M.gguf")
    assert lc["ggml-org/phi-GGUF"].architecture == "phi3"  # tag 'latest' is left out
    assert lc["ggml-org/gone-GGUF:Q8_0"].problem == (
        "file ggml-org_gone-GGUF_gone.gguf missing")
    assert lc["ggml-org/bad-GGUF:Q8_0"].problem == "broken manifest: TypeError"
    assert lc["stray.gguf"].problem is None
    # A split model is one entry (its first part), marked as not loadable here.
    assert "big-00002-of-00002.gguf" not in lc
    assert "split GGUF in 2 parts" in (lc["big-00001-of-00002.gguf"].problem or "")
    # Files named by a manifest are not listed a second time under their file name.
    assert not any(n.startswith("bartowski_") for n in lc)
    g4a = _by(entries, "gpt4all")
    assert list(g4a) == ["orca-mini.gguf"]


def test_scan_is_read_only(home: Path) -> None:
    before = _tree(home)
    scan_tool_stores(env={}, home=home)
    assert _tree(home) == before


def test_roots_follow_the_tools_own_settings(tmp_path: Path, home: Path) -> None:
    moved = tmp_path / "elsewhere"
    ollama_model(moved / "ollama", "tiny:1b", write_gguf(tmp_path / "t.gguf"))
    write_gguf(moved / "lc" / "x.gguf")
    write_gguf(moved / "lms" / "pub" / "repo" / "m.gguf")
    write_gguf(moved / "g4a" / "g.gguf")
    (home / ".lmstudio").mkdir(exist_ok=True)
    (home / ".lmstudio" / "settings.json").write_text(
        json.dumps({"downloadsFolder": str(moved / "lms")}))
    ini = home / ".config" / "nomic.ai" / "GPT4All.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text(f"[General]\nmodelPath={moved / 'g4a'}\n")
    env = {"OLLAMA_MODELS": str(moved / "ollama"), "LLAMA_CACHE": str(moved / "lc")}
    roots = tool_roots(env, home)
    assert roots.ollama == [moved / "ollama"]
    assert roots.llama_cpp == [moved / "lc"]
    assert roots.lm_studio[0] == moved / "lms"
    assert roots.gpt4all[0] == moved / "g4a"
    names = {(e.source, e.name) for e in scan_tool_stores(env, home)}
    assert {("ollama", "tiny:1b"), ("llama.cpp", "x.gguf"), ("lm-studio", "pub/repo/m.gguf"),
            ("gpt4all", "g.gguf")} <= names
    # A tools home set through the environment ignores the XDG folders of the real one.
    xdg = {"SLMCHAT_TOOLS_HOME": str(home), "XDG_CACHE_HOME": str(moved)}
    assert tool_roots(xdg).llama_cpp == [home / ".cache" / "llama.cpp"]


def test_missing_or_unreadable_stores_are_empty(tmp_path: Path) -> None:
    assert scan_tool_stores(env={}, home=tmp_path / "nobody") == []
    (tmp_path / "h" / ".ollama" / "models").mkdir(parents=True)  # no manifests yet
    assert scan_tool_stores(env={}, home=tmp_path / "h") == []


def test_ollama_names() -> None:
    assert ollama_name(("registry.ollama.ai", "library", "qwen2.5", "0.5b")) == "qwen2.5:0.5b"
    assert ollama_name(("registry.ollama.ai", "user", "m", "q4")) == "user/m:q4"
    assert ollama_name(("hf.co", "org", "repo", "Q8_0")) == "hf.co/org/repo:Q8_0"


def test_discover_lists_tool_stores_with_their_names(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLMCHAT_TOOLS_HOME", str(home))
    entries = discover(include_default=False, include_hf_cache=False)
    labels = {e.label for e in entries}
    assert "ollama: qwen2.5:0.5b" in labels
    assert "llama.cpp: bartowski/Qwen-GGUF:Q4_K_M" in labels
    # Broken manifests are kept apart even though they share no file.
    assert {"ollama: broken:latest", "ollama: nomodel:latest"} <= labels
    assert discover(include_default=False, include_hf_cache=False, include_tools=False) == []


def test_a_gguf_blob_without_suffix_resolves_by_content(home: Path, tmp_path: Path) -> None:
    qwen = _by(scan_tool_stores(env={}, home=home), "ollama")["qwen2.5:0.5b"]
    assert resolve_source(ModelSpec(path=qwen.path)) == ("gguf", Path(qwen.path))
    text = tmp_path / "sha256-abc"
    text.write_text("not a model")
    with pytest.raises(ModelLoadError, match="expected a checkpoint folder or a GGUF file"):
        resolve_source(ModelSpec(path=str(text)))


def test_an_ollama_blob_loads_and_chats(tmp_path: Path, tiny_llama_dir: Path) -> None:
    """A real (tiny) Llama exported to GGUF, stored as Ollama stores it, loads by its blob
    path from discovery and answers."""
    from slmchat.engine.generation.prompting import ChatMessage
    from slmchat.engine.generation.sampling import SamplingParams
    from slmchat.engine.session import Engine
    from slmchat.engine.tools.export import export_model

    gguf_file = tmp_path / "tiny.gguf"
    export_model(ModelSpec(path=str(tiny_llama_dir)), gguf=gguf_file)
    store = tmp_path / "home" / ".ollama" / "models"
    ollama_model(store, "tiny:1b", gguf_file)
    entry = _by(scan_tool_stores(env={}, home=tmp_path / "home"), "ollama")["tiny:1b"]
    assert entry.problem is None and entry.n_params > 0
    engine = Engine()
    info = engine.load(ModelSpec(path=entry.path, device="cpu", dtype="fp32"))
    assert info.kind == "gguf" and info.path == entry.path
    assert info.name == "tiny:1b"  # the blob is named by its Ollama tag
    params = SamplingParams(temperature=0.0, max_new_tokens=4)
    chunks = list(engine.stream_chat([ChatMessage("user", "hi")], params))
    assert chunks[-1].finish_reason in ("stop", "length") and chunks[-1].new_tokens > 0


def test_models_command_lists_tool_stores(home: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from slmchat.cli import main

    monkeypatch.setenv("SLMCHAT_TOOLS_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "no-hub"))
    assert main(["models", "qwen2.5"]) == 0
    out = capsys.readouterr().out.splitlines()
    row = next(ln for ln in out if ln.startswith("qwen2.5:0.5b"))
    assert "(= qwen2.5:latest)" in row and " ollama " in row and "llama" in row
    assert main(["models", "--json", "broken"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(d["source"], d["name"], d["problem"]) for d in data] == [
        ("ollama", "broken:latest", "broken manifest: JSONDecodeError")]
    assert main(["models", "--no-tools", "qwen2.5"]) == 0
    assert "(no models match)" in capsys.readouterr().out


def _scan_within(home: Path, seconds: float = 20) -> list[ModelEntry]:
    """scan_tool_stores in a thread: a scan that blocks on a FIFO fails, not hangs."""
    import threading

    out: list[list[ModelEntry]] = []
    thread = threading.Thread(target=lambda: out.append(scan_tool_stores(env={}, home=home)),
                              daemon=True)
    thread.start()
    thread.join(seconds)
    assert out, "the scan blocked"
    return out[0]


def test_fifo_device_and_truncated_blobs_get_their_own_reason(tmp_path: Path) -> None:
    om = tmp_path / "home" / ".ollama" / "models"
    ggufs = tmp_path / "ggufs"
    for name in ("fifo:1b", "zero:1b", "cut:1b"):
        manifest = ollama_model(om, name, write_gguf(ggufs / f"{name[:4]}.gguf", name=name))
        digest = json.loads(manifest.read_text())["layers"][0]["digest"].replace(":", "-")
        blob = om / "blobs" / digest
        if name == "fifo:1b":
            blob.unlink()
            os.mkfifo(blob)
        elif name == "zero:1b":
            blob.unlink()
            blob.symlink_to("/dev/zero")
        else:  # cut short, and the manifest says so too (as a re-pull that stopped would)
            data = blob.read_bytes()[:-64]
            blob.write_bytes(data)
            layers = json.loads(manifest.read_text())
            layers["layers"][0]["size"] = len(data)
            manifest.write_text(json.dumps(layers))
    fifo_manifest = om / "manifests" / "registry.ollama.ai" / "library" / "pipe" / "latest"
    fifo_manifest.parent.mkdir(parents=True)
    os.mkfifo(fifo_manifest)
    lc = tmp_path / "home" / ".cache" / "llama.cpp"
    lc.mkdir(parents=True)
    os.mkfifo(lc / "manifest=org=pipe-GGUF=Q8_0.json")
    entries = _scan_within(tmp_path / "home")
    ollama = _by(entries, "ollama")
    assert ollama["fifo:1b"].problem.endswith("is a FIFO, not a file")
    assert ollama["zero:1b"].problem.endswith("is a device, not a file")
    assert ollama["pipe:latest"].problem == "broken manifest: is a FIFO, not a file"
    assert ollama["cut:1b"].problem == "truncated GGUF file: 608 of 672 bytes"
    assert _by(entries, "llama.cpp")["org/pipe-GGUF:Q8_0"].problem.startswith("broken manifest")
    with pytest.raises(ModelLoadError, match=r"truncated GGUF file: 608 of 672 bytes .*again"):
        resolve_source(ModelSpec(path=ollama["cut:1b"].path))
