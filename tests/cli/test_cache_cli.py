"""`slmchat cache list|clear` on fake folders: what is listed, removed, skipped, kept."""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

import pytest

from slmchat.cli import main
from slmchat.engine.fsutil import hold_in_use, in_use_lock
from tests.cli.cachekit import fake_default_copy, fake_home, fake_onnx_copy

DAY = 86400


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_llama_dir: Path) -> dict[str, Path]:
    dirs = fake_home(tmp_path, monkeypatch)
    fake_default_copy(dirs["cache"], tiny_llama_dir)
    fake_onnx_copy(dirs["cache"])
    # The user's own things, which a clear must never touch.
    (dirs["data"] / "conversations.sqlite3").write_text("chats")
    (dirs["data"] / "models" / "my-int8").mkdir(parents=True)
    (dirs["data"] / "runs" / "run-1").mkdir(parents=True)
    (dirs["config"] / "settings.toml").write_text("")
    return dirs


def _age(folder: Path, days: float) -> None:
    then = time.time() - days * DAY
    os.utime(folder, (then, then))


def _remaining(cache: Path) -> set[str]:
    return {f"{p.parent.name}/{p.name}" for p in cache.glob("*/*") if not p.name.startswith(".")}


def _user_things_intact(home: dict[str, Path]) -> None:
    assert (home["data"] / "conversations.sqlite3").read_text() == "chats"
    assert (home["data"] / "models" / "my-int8").is_dir()
    assert (home["data"] / "runs" / "run-1").is_dir()
    assert (home["config"] / "settings.toml").is_file()


def test_list_shows_source_size_last_use(home: dict[str, Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache"]) == 0 and main(["cache", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"cache folder: {home['cache']}"
    assert out[1].split() == ["COPY", "SIZE", "LAST", "USE", "STATE", "SOURCE"]
    rows = {ln.split()[0]: ln for ln in out[2:4]}
    assert "/wheel/SmolLM2.gguf" in rows["models/SmolLM2-135M-Instruct"]
    assert "/models/smol" in rows["onnx/smol-int8-0123456789abcdef"]
    assert all(" ok " in r for r in rows.values())
    assert out[4].startswith("2 copies, ")

    assert main(["cache", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [c["label"] for c in listed] == ["models/SmolLM2-135M-Instruct",
                                           "onnx/smol-int8-0123456789abcdef"]
    assert all(c["size_bytes"] > 0 and c["last_used"] > 0 and not c["in_use"] for c in listed)


def test_dry_run_removes_nothing(home: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "clear", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would remove models/SmolLM2-135M-Instruct" in out
    assert "would remove 2 copies" in out
    assert len(_remaining(home["cache"])) == 2


def test_clear_all_keeps_the_users_things(home: dict[str, Path],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "clear"]) == 0
    assert "removed 2 copies" in capsys.readouterr().out
    assert _remaining(home["cache"]) == set()
    assert not list(home["cache"].glob("*/.*.inuse"))
    _user_things_intact(home)


def test_clear_by_name_and_unknown_name(home: dict[str, Path],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "clear", "onnx/smol-int8-0123456789abcdef"]) == 0
    assert _remaining(home["cache"]) == {"models/SmolLM2-135M-Instruct"}
    assert main(["cache", "clear", "nothing-like-this"]) == 2
    assert "no converted copy named nothing-like-this" in capsys.readouterr().err
    assert main(["cache", "clear", "--older-than", "-1"]) == 2


def test_older_than_uses_last_use(home: dict[str, Path]) -> None:
    default_copy = home["cache"] / "models" / "SmolLM2-135M-Instruct"
    onnx_copy = home["cache"] / "onnx" / "smol-int8-0123456789abcdef"
    _age(default_copy, 40)
    _age(onnx_copy, 40)
    hold_lock = in_use_lock(onnx_copy)
    hold_lock.touch()  # a recent load of the ONNX copy (the lock file's mtime)
    assert main(["cache", "clear", "--older-than", "30"]) == 0
    assert _remaining(home["cache"]) == {"onnx/smol-int8-0123456789abcdef"}


def test_copy_in_use_is_skipped(home: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    copy = home["cache"] / "models" / "SmolLM2-135M-Instruct"
    lock = in_use_lock(copy)
    lock.touch()
    fd = os.open(lock, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)  # what a running app holds (hold_in_use)
    try:
        assert main(["cache", "list"]) == 0
        assert "ok, in use" in capsys.readouterr().out
        assert main(["cache", "clear"]) == 0
        out = capsys.readouterr().out
        assert "skipped models/SmolLM2-135M-Instruct: in use by a running slmchat" in out
        assert "removed 1 copy" in out
        assert copy.is_dir() and (copy / "model.safetensors").is_file()
    finally:
        os.close(fd)
    assert main(["cache", "clear"]) == 0
    assert _remaining(home["cache"]) == set()


def test_hold_in_use_records_the_last_use(tmp_path: Path) -> None:
    copy = tmp_path / "models" / "x"
    copy.mkdir(parents=True)
    hold_in_use(copy)
    first = in_use_lock(copy).stat().st_mtime
    os.utime(in_use_lock(copy), (first - DAY, first - DAY))
    hold_in_use(copy)  # a second load in the same process refreshes the time
    assert in_use_lock(copy).stat().st_mtime > first - 60


def test_cache_pointed_at_the_data_folder_touches_nothing(
        home: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SLMCHAT_CACHE_DIR", str(home["data"]))
    assert main(["cache", "clear"]) == 0
    out = capsys.readouterr().out
    assert "skipped models/my-int8: lies in the models folder" in out
    assert "skipped runs/run-1: lies in the runs folder" in out
    assert "removed 0 copies" in out
    _user_things_intact(home)


def test_partial_leftovers_are_cleared_once_stale(home: dict[str, Path],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    fresh = home["cache"] / "models" / ".SmolLM2-135M-Instruct.abc123"
    stale = home["cache"] / "onnx" / ".smol.tmp-xyz"
    for folder in (fresh, stale):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"\0" * 100)
    then = time.time() - 2 * 3600
    os.utime(stale / "model.safetensors", (then, then))
    _age(stale, 2 / 24)
    assert main(["cache", "list"]) == 0
    assert "left by an interrupted conversion" in capsys.readouterr().out
    assert main(["cache", "clear"]) == 0
    out = capsys.readouterr().out
    assert "removed onnx/.smol.tmp-xyz" in out
    assert "skipped models/.SmolLM2-135M-Instruct.abc123: a conversion may still" in out
    assert fresh.is_dir() and not stale.exists()


def test_list_names_a_tuned_copys_adapter_not_only_its_base(
        home: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 26 #18: a fine-tuned model's ONNX copy had the base model's folder as its
    SOURCE, as if it were the base's copy."""
    tuned = fake_onnx_copy(home["cache"], "notes-int8-fedcba9876543210")
    marker = tuned / "slmchat-onnx.json"
    meta = json.loads(marker.read_text())
    marker.write_text(json.dumps({**meta, "adapter": "/home/me/runs/notes/model"}))
    assert main(["cache", "list"]) == 0
    rows = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()[2:5]}
    assert rows["onnx/notes-int8-fedcba9876543210"].endswith(
        "/home/me/runs/notes/model (LoRA on /models/smol)")
    assert rows["onnx/smol-int8-0123456789abcdef"].endswith("/models/smol")
    assert main(["cache", "list", "--json"]) == 0
    listed = {c["label"]: c for c in json.loads(capsys.readouterr().out)}
    assert listed["onnx/notes-int8-fedcba9876543210"]["adapter"] == "/home/me/runs/notes/model"
