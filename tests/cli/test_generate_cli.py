"""CLI: every bad input gives one clear line on stderr and exit 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from slmchat.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(code: int, err: str) -> None:
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("slmchat: error:")
    assert "Traceback" not in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert "slmchat 0." in capsys.readouterr().out


def test_generate_on_tiny_model(capsys: pytest.CaptureFixture[str], tiny_llama_dir: Path) -> None:
    code, out, err = _run(capsys, "generate", "The quick brown", "--model", str(tiny_llama_dir),
                          "--temperature", "0", "--max-new-tokens", "8", "--stats")
    assert code == 0
    assert out.endswith("\n")
    stats = err.strip().splitlines()[-1]
    assert stats.startswith("stats prompt_tokens=")
    fields = dict(kv.split("=") for kv in stats.split()[1:])
    for key in ("prompt_tokens", "new_tokens", "ttft_s", "prefill_tok_s", "decode_tok_s",
                "peak_rss_mb"):
        assert float(fields[key]) >= 0
    assert int(fields["new_tokens"]) <= 8


def test_generate_names_a_model_that_is_not_the_default(
        capsys: pytest.CaptureFixture[str], tiny_llama_dir: Path) -> None:
    """A model set in settings.toml (e.g. by hand, or by an older app) is named on
    stderr with where it came from, and in --stats."""
    from slmchat.config import Settings, save_settings, settings_path

    settings = Settings()
    settings.model.path = str(tiny_llama_dir)
    save_settings(settings)
    code, _, err = _run(capsys, "generate", "The quick", "--temperature", "0",
                        "--max-new-tokens", "2", "--stats")
    assert code == 0
    lines = err.strip().splitlines()
    named = [ln for ln in lines if ln.startswith("slmchat: model: ")]
    assert len(named) == 1
    assert str(tiny_llama_dir) in named[0] and str(settings_path()) in named[0]
    assert "--model default" in named[0]
    assert lines[-1].split()[-1] == f"model={tiny_llama_dir}"
    code, _, err = _run(capsys, "generate", "The quick", "--model", str(tiny_llama_dir),
                        "--max-new-tokens", "2")
    assert code == 0 and "from --model" in err and "--model default" not in err


def test_model_line_is_silent_for_the_default() -> None:
    import argparse

    from slmchat.commands.common import model_line
    from slmchat.engine.model.spec import ModelSpec

    args = argparse.Namespace(model=None, adapter=None)
    assert model_line(args, ModelSpec(), "SmolLM2-135M-Instruct") is None
    assert model_line(args, ModelSpec(adapter="/a"), "x") is not None


def test_raw_mode_and_stdin(capsys: pytest.CaptureFixture[str], tiny_gpt2_dir: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("Paris is"))
    code, _, _ = _run(capsys, "generate", "-", "--raw", "--model", str(tiny_gpt2_dir),
                      "--temperature", "0", "--max-new-tokens", "4")
    assert code == 0


@pytest.mark.parametrize("argv", [
    ["generate", "hi", "--model", "/no/such/model"],
    ["generate", "hi", "--temperature", "-1"],
    ["generate", "hi", "--top-p", "0"],
    ["generate", "hi", "--top-k", "-5"],
    ["generate", "hi", "--max-new-tokens", "0"],
    ["generate", "hi", "--seed", "-1"],
    ["generate", "   "],
    ["generate", "hi", "--temperature", "warm"],
    ["generate", "hi", "--dtype", "fp8"],
    ["generate", "hi", "--quant", "2bit"],
    ["generate"],
    ["generate", "hi", "--no-such-flag"],
    ["generate", "hi", "--speculative", "fast"],
    ["generate", "hi", "--speculative", "lookup:other"],
])
def test_bad_input_is_one_line_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    try:
        code, _, err = _run(capsys, *argv)
    except SystemExit as exc:  # argparse errors
        code = int(exc.code or 0)
        err = capsys.readouterr().err
    _assert_one_line_error(code, err)


def test_bad_model_folders(capsys: pytest.CaptureFixture[str], tiny_llama_dir: Path,
                           tmp_path: Path) -> None:
    import shutil

    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _run(capsys, "generate", "hi", "--model", str(empty))
    _assert_one_line_error(code, err)
    assert "config.json" in err
    trunc = tmp_path / "trunc"
    shutil.copytree(tiny_llama_dir, trunc)
    w = trunc / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    code, _, err = _run(capsys, "generate", "hi", "--model", str(trunc))
    _assert_one_line_error(code, err)
    not_model = tmp_path / "file.txt"
    not_model.write_text("x")
    code, _, err = _run(capsys, "generate", "hi", "--model", str(not_model))
    _assert_one_line_error(code, err)
    code, _, err = _run(capsys, "generate", "hi", "--model", str(tiny_llama_dir),
                        "--device", "cuda:7")
    _assert_one_line_error(code, err)


def test_debug_shows_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "SLMCHAT_DATA_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "slmchat", "--debug", "generate", "hi", "--model", "/nope"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "ModelLoadError" in proc.stderr


def test_library_noise_is_filtered_and_pipes_get_few_progress_lines(
        tmp_path: Path, tiny_llama_dir: Path) -> None:
    """Loading an adapter printed a bitsandbytes kernel message and a FutureWarning, and
    an export into a pipe printed ~270 progress lines."""
    from tests.modelkit import make_lora

    adapter = make_lora(tiny_llama_dir, tmp_path / "lora")
    env = {**os.environ, "SLMCHAT_DATA_DIR": str(tmp_path / "data"),
           "SLMCHAT_CONFIG_DIR": str(tmp_path / "config"), "SLMCHAT_THREADS": "1"}
    gen = subprocess.run(
        [sys.executable, "-m", "slmchat", "generate", "hello", "--model", str(adapter),
         "--temperature", "0", "--max-new-tokens", "3"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert gen.returncode == 0, gen.stderr
    assert [ln for ln in gen.stderr.splitlines() if not ln.startswith("slmchat: ")] == []
    export = subprocess.run(
        [sys.executable, "-m", "slmchat", "export", str(adapter), "--merge-adapter",
         "--out", str(tmp_path / "merged"), "--gguf", str(tmp_path / "m.gguf")],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert export.returncode == 0, export.stderr
    lines = export.stderr.splitlines()
    assert all(ln.startswith("export: ") for ln in lines), lines  # one line per stage
    assert 3 <= len(lines) <= 12 and lines[-1].startswith("export: done in")


@pytest.mark.realmodel
@pytest.mark.parametrize(("flags", "check"), [
    (["--json"], lambda out: isinstance(__import__("json").loads(out), dict)),
    (["--choice", "yes,no"], lambda out: out in ("yes", "no")),
    (["--regex", "[0-9]{4}"], lambda out: len(out) == 4 and out.isdigit()),
    (["--json-schema", "SCHEMA"], lambda out: set(__import__("json").loads(out)) == {"city", "country"}),
    (["--grammar", "LARK"], lambda out: out in ("Paris", "London")),
])
def test_constrained_output_on_the_default_model_parses(flags: list[str], check, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import json

    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "additionalProperties": False,
                                  "required": ["city", "country"],
                                  "properties": {"city": {"type": "string", "maxLength": 20},
                                                 "country": {"type": "string", "maxLength": 20}}}))
    lark = tmp_path / "g.lark"
    lark.write_text('start: "Paris" | "London"\n')
    flags = [str(schema) if f == "SCHEMA" else str(lark) if f == "LARK" else f for f in flags]
    assert main(["generate", "Where is the Eiffel tower?", "-t", "0",
                 "--max-new-tokens", "200", "--stats", *flags]) == 0
    out, err = capsys.readouterr()
    assert check(out.strip()), out
    assert "finish=stop" in err and "constraint=" in err


def test_a_bad_constraint_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "object", "properties": 5}')
    for flags in (["--regex", "([a-"], ["--json-schema", str(bad)], ["--json", "--regex", "a"],
                  ["--choice", ","], ["--grammar", str(tmp_path / "missing.lark")]):
        assert main(["generate", "hi", *flags]) == 2, flags
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("slmchat: error:"), (flags, err)


def test_an_over_long_model_path_is_one_short_line(capsys: pytest.CaptureFixture[str]) -> None:
    path = "a/" * 5_000_000  # 10 MB: Errno 36, and the message must not echo it
    code, _, err = _run(capsys, "generate", "hi", "--model", path)
    _assert_one_line_error(code, err)
    assert "File name too long" in err and "(10000000 characters)" in err and len(err) < 400
    code, _, err = _run(capsys, "generate", "hi", "--model", "a\x00b")
    _assert_one_line_error(code, err)


@pytest.mark.parametrize("case", ["nested-toml", "env-not-json", "env-nested"])
def test_settings_that_cannot_be_read_warn_once_and_use_defaults(
        case: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from slmchat.config import settings_path

    if case == "nested-toml":
        settings_path().parent.mkdir(parents=True, exist_ok=True)
        settings_path().write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    elif case == "env-not-json":
        monkeypatch.setenv("SLMCHAT_UI", "{not json")
    else:
        monkeypatch.setenv("SLMCHAT_MODEL__DIRS", "[" * 100_000 + "]" * 100_000)
    code, out, err = _run(capsys, "models", "--no-hf-cache", "--no-tools")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 0 and "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("slmchat: warning: ignoring"), err
    assert "SmolLM2-135M-Instruct" in out  # the defaults: the embedded model is listed


def test_chat_on_a_full_data_disk_is_one_line(small_disk, default_model_dir: Path) -> None:
    small_disk.fill(0)
    env = {**os.environ, "SLMCHAT_DATA_DIR": str(small_disk.root / "data")}
    done = subprocess.run([sys.executable, "-m", "slmchat", "chat"], env=env, timeout=120,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("slmchat: error: cannot open the conversations in ")
    assert "the disk is full" in lines[0]
