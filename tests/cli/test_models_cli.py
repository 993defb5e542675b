"""`slmchat models / eval / quantize / export` end to end on tiny models (in-process)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from slmchat.cli import main
from tests.modelkit import make_lora, truncated_copy
from tests.tinymodels import CORPUS


@pytest.fixture
def model_root(tmp_path: Path, tiny_llama_dir: Path, tiny_gpt2_dir: Path,
               monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "mymodels"
    shutil.copytree(tiny_llama_dir, root / "llama")
    shutil.copytree(tiny_gpt2_dir, root / "gpt2")
    monkeypatch.setenv("SLMCHAT_MODEL__DIRS", json.dumps([str(root)]))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    return root


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "eval.txt"
    path.write_text(CORPUS[:400])
    return path


def test_models_table_and_json(model_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["NAME", "FORMAT", "ARCH", "PARAMS"]
    assert any("mymodels/llama" in ln and "LlamaForCausalLM" in ln for ln in lines)
    assert main(["models", "--json", "gpt2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in data] == ["mymodels/gpt2"]
    assert data[0]["has_chat_template"] is False and data[0]["n_params"] > 0


def test_eval_prints_last_line(model_root: Path, text_file: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(model_root / "llama"), str(text_file), "--window", "64",
                 "--stride", "32"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"perplexity=\d+\.\d+ tokens=\d+", last)


def test_quantize_reports_size_and_perplexity(model_root: Path, text_file: Path,
                                              tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "q8"
    assert main(["quantize", str(model_root / "llama"), "--bits", "8", "--method", "cpu-int8",
                 "--out", str(out), "--eval-file", str(text_file), "--window", "64"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"size before=\S+ \w+ after=\S+ \w+ ratio=0\.\d+", text)
    before = re.search(r"before: perplexity=([\d.]+)", text)
    after = re.search(r"after: perplexity=([\d.]+)", text)
    assert before and after and abs(float(before[1]) - float(after[1])) < 0.1 * float(before[1])
    assert main(["eval", str(out), str(text_file), "--window", "64"]) == 0


@pytest.mark.parametrize("argv,message", [
    (["quantize", "{llama}", "--bits", "4", "--method", "cpu-int8", "--out", "{tmp}/q"],
     "8-bit only"),
    (["export", "{tmp}/nothing-here", "--out", "{tmp}/o"], "does not exist"),
    (["export", "{junk}", "--out", "{tmp}/o"], "not a model folder"),
    (["eval", "{broken}", "{text}"], "truncated"),
    (["eval", "{llama}", "{tmp}/missing.txt"], "not found"),
    (["export", "{gpt2}", "--gguf", "{tmp}/g.gguf"], "Llama"),
    (["quantize", "{llama}", "--bits", "8", "--out", "{afile}/q"], "cannot write"),
])
def test_bad_inputs_exit_2_with_one_line(
    argv: list[str], message: str, model_root: Path, text_file: Path, tmp_path: Path,
    tiny_llama_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "junk").mkdir()
    (tmp_path / "afile").write_text("")
    truncated_copy(tiny_llama_dir, tmp_path / "broken")
    subs = {"llama": model_root / "llama", "gpt2": model_root / "gpt2", "tmp": tmp_path,
            "junk": tmp_path / "junk", "broken": tmp_path / "broken", "text": text_file,
            "afile": tmp_path / "afile"}
    assert main([a.format(**subs) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([ln for ln in err if ln.startswith("slmchat: error:")]) == 1
    assert message in err[-1] and "Traceback" not in "\n".join(err)


def test_export_merge_and_gguf(model_root: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    adapter = make_lora(model_root / "llama", tmp_path / "adapter")
    out, gguf = tmp_path / "merged", tmp_path / "merged.gguf"
    assert main(["export", str(adapter), "--out", str(out), "--merge-adapter",
                 "--gguf", str(gguf), "--gguf-type", "q8_0"]) == 0
    text = capsys.readouterr().out
    assert "(adapter merged)" in text and "gguf check:" in text and "tokenizer_match=True" in text
    assert (out / "model.safetensors").is_file() and gguf.is_file()
    assert main(["export", str(adapter), "--out", str(out), "--merge-adapter"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_quantize_onnx_int8_writes_a_standalone_copy(model_root: Path, text_file: Path,
                                                      tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "onnx8"
    assert main(["quantize", str(model_root / "llama"), "--method", "onnx-int8", "--out", str(out),
                 "--eval-file", str(text_file), "--window", "64"]) == 0
    text = capsys.readouterr().out
    assert "(onnx-int8, 8-bit)" in text
    before = re.search(r"before: perplexity=([\d.]+)", text)
    after = re.search(r"after: perplexity=([\d.]+)", text)
    assert before and after and abs(float(before[1]) - float(after[1])) < 0.02 * float(before[1])
    assert (out / "README.md").is_file() and (out / "genai_config.json").is_file()
    assert main(["generate", "hi", "--model", str(out), "--max-new-tokens", "3", "--stats"]) == 0
    assert "runtime=onnx precision=int8" in capsys.readouterr().err
    assert main(["eval", str(out), str(text_file), "--window", "64"]) == 0
    assert re.fullmatch(r"perplexity=[\d.]+ tokens=\d+", capsys.readouterr().out.strip().splitlines()[-1])
    from slmchat.engine.model.discovery import inspect_folder

    entry = inspect_folder(out, "models")
    assert entry is not None and entry.format == "onnx-int8" and entry.problem is None
    assert entry.context_length == 256 and entry.has_chat_template
    source = inspect_folder(model_root / "llama", "models")
    assert source is not None and entry.n_params == source.n_params > 0  # issue 26 #8: was 0
    # Bad uses of the copy: one line each.
    assert main(["generate", "hi", "--model", str(out), "--runtime", "transformers"]) == 2
    assert "onnx runtime only" in capsys.readouterr().err
    (out / "model.onnx.data").write_bytes(b"short")
    assert main(["generate", "hi", "--model", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken ONNX copy" in err[0] and "wrong size" in err[0]


@pytest.mark.parametrize("argv,message", [
    (["quantize", "{llama}", "--bits", "4", "--method", "onnx-int8", "--out", "{tmp}/q"], "8-bit only"),
    (["quantize", "{gpt2}", "--method", "onnx-int8", "--out", "{tmp}/q"], "does not support GPT2"),
    (["quantize", "{llama}", "--out", "{tmp}/q"], "needs --bits"),
])
def test_onnx_quantize_bad_inputs(argv: list[str], message: str, model_root: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    subs = {"llama": model_root / "llama", "gpt2": model_root / "gpt2", "tmp": tmp_path}
    assert main([a.format(**subs) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "q").exists()


def test_models_table_names_a_loras_base_not_its_whole_path(
        model_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 26 #18: a LoRA's FORMAT was "lora on /the/whole/base/path"."""
    make_lora(model_root / "llama", model_root / "llama-lora")
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(ln for ln in lines if ln.startswith("mymodels/llama-lora"))
    cells = row.split()
    assert cells[1:4] == ["lora", "on", "mymodels/llama"], row
    assert main(["models", "--json"]) == 0
    (entry,) = [e for e in json.loads(capsys.readouterr().out) if e["format"] == "lora"]
    assert entry["base"] == str(model_root / "llama")  # the whole path stays in --json

    from slmchat.commands.models import base_name

    hub = "/h/hub/models--HuggingFaceTB--SmolLM2-135M-Instruct/snapshots/0123abcd"
    assert base_name(hub, {}) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert base_name("default", {}) == "default"


@pytest.fixture
def shared_tmp(tmp_path: Path):
    """A folder another user can read (tmp_path's parents are private to root)."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="slmchat-perm-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)  # root may remove what 'nobody' could not read


def test_models_skips_what_it_cannot_read_with_a_reason(shared_tmp: Path,
                                                        tiny_llama_dir: Path) -> None:
    """Real permissions: run as 'nobody' when the tests run as root (root reads all)."""
    import os
    import subprocess
    import sys

    shutil.copytree(tiny_llama_dir, shared_tmp / "mine" / "llama")
    shutil.copytree(tiny_llama_dir, shared_tmp / "partly" / "ok")
    (shared_tmp / "partly" / "secret" / "inner").mkdir(parents=True)
    (shared_tmp / "locked" / "model").mkdir(parents=True)
    for p in [shared_tmp, *shared_tmp.rglob("*")]:
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() else 0o644)
    for name in ("config", "data", "cache"):  # the settings and data 'nobody' may write
        (shared_tmp / name).mkdir(mode=0o777)
        (shared_tmp / name).chmod(0o777)
    (shared_tmp / "locked").chmod(0o700)
    (shared_tmp / "partly" / "secret").chmod(0o700)
    (shared_tmp / "proc-link").symlink_to("/proc/1/cwd")
    dirs = [str(shared_tmp / n) for n in ("mine", "locked", "proc-link", "partly")]
    env = {**os.environ, "SLMCHAT_MODEL__DIRS": json.dumps(dirs), "HOME": str(shared_tmp),
           "SLMCHAT_CONFIG_DIR": str(shared_tmp / "config"),
           "SLMCHAT_DATA_DIR": str(shared_tmp / "data"),
           "SLMCHAT_CACHE_DIR": str(shared_tmp / "cache"),
           "SLMCHAT_TOOLS_HOME": str(shared_tmp / "home"), "TMPDIR": str(shared_tmp)}
    as_other = (["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
                if os.geteuid() == 0 else [])
    if as_other and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot drop read permissions")
    done = subprocess.run([*as_other, sys.executable, "-m", "slmchat", "models",
                           "--no-hf-cache"], env=env, capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    rows = {ln.split()[0]: ln for ln in done.stdout.splitlines()[1:]}
    assert "mine/llama" in rows and "partly/ok" in rows  # readable models still listed
    assert any(" default " in r for r in rows.values())  # the embedded model too
    for name in ("locked", "proc-link", "partly/secret"):
        assert "skipped, cannot read: Permission denied" in rows[name], done.stdout


def test_scanning_a_huge_folder_is_bounded_and_says_so(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from slmchat.engine.model import discovery

    monkeypatch.setattr(discovery, "MAX_SCAN_FOLDERS", 300)
    found = discovery.scan_folder(Path("/"), "settings", prefix="/")
    stopped = [e for e in found if e.problem and e.problem.startswith("scan stopped")]
    assert len(stopped) == 1 and stopped[0].problem == (
        "scan stopped after 300 folders: point [model] dirs at the folders that hold models")
    assert not any(e.path.startswith(("/proc/", "/sys/", "/dev/")) for e in found)


def test_a_killed_export_or_quantize_leaves_temp_folders_the_next_run_removes(
        model_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import subprocess
    import time

    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid whose process has ended: a killed export's
    out_dir = tmp_path / "outs"
    out_dir.mkdir()

    def leftovers(name: str, suffix: str = "") -> dict[str, Path]:
        paths = {"killed": out_dir / f".{name}.tmp-{gone.pid}-k1ll3d{suffix}",
                 "old": out_dir / f".{name}.tmp-a8sd7f{suffix}",  # before pids were in names
                 "young": out_dir / f".{name}.tmp-b9te8g{suffix}",
                 "live": out_dir / f".{name}.tmp-{os.getpid()}-w0rk1n{suffix}"}
        for path in paths.values():
            if suffix:
                path.write_bytes(b"\0" * 1000)
            else:
                path.mkdir()
                (path / "model.safetensors").write_bytes(b"\0" * 1000)
        hour_ago = time.time() - 7200
        os.utime(paths["old"], (hour_ago, hour_ago))
        return paths

    q8 = leftovers("q8")
    assert main(["quantize", str(model_root / "llama"), "--bits", "8", "--method", "cpu-int8",
                 "--out", str(out_dir / "q8")]) == 0
    gguf = leftovers("tiny", ".gguf")
    assert main(["export", str(model_root / "llama"), "--gguf", str(out_dir / "tiny.gguf"),
                 "--gguf-type", "q8_0"]) == 0
    capsys.readouterr()
    for paths in (q8, gguf):
        assert not paths["killed"].exists() and not paths["old"].exists()
        assert paths["young"].exists() and paths["live"].exists()  # may still be written
    assert (out_dir / "q8").is_dir() and (out_dir / "tiny.gguf").is_file()
