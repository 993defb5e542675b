"""scripts/venv.sh (which Python the Makefile builds .venv with) and scripts/step.sh,
run against fake interpreters on a PATH that holds nothing else."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("sh", "grep", "head", "tr", "cut", "rm", "mkdir", "cp", "date", "awk", "cat")

FAKE = """#!/bin/sh
# A fake Python {version}: answers the version probe, pip's dry run and `-m venv`.
case "$1" in
  -c) [ {runs} = 1 ] || exit 127; echo "{version}" ;;
  -m) if [ "$2" = pip ]; then exit {pip_rc}; fi
      if [ "$2" = venv ]; then [ {venv_ok} = 1 ] || {{ echo "ensurepip is not available" >&2; exit 1; }}
                               mkdir -p "$3/bin"; cp "$0" "$3/bin/python"; exit 0; fi ;;
esac
"""


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A PATH with the shell tools the scripts use and no Python at all."""
    d = tmp_path / "bin"
    d.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (d / tool).symlink_to(found)
    return d


def fake_python(bin_dir: Path, name: str, version: str, local_torch: bool = False,
                venv_ok: bool = True, runs: bool = True) -> None:
    path = bin_dir / name
    path.write_text(FAKE.format(version=version, pip_rc=0 if local_torch else 1,
                                venv_ok=int(venv_ok), runs=int(runs)))
    path.chmod(0o755)


def venv_sh(bin_dir: Path, venv: Path, py: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(ROOT / "scripts" / "venv.sh"), str(venv), py],
                          cwd=ROOT, env={"PATH": str(bin_dir), "TMPDIR": str(venv.parent)},
                          capture_output=True, text=True, timeout=60)


def test_newest_supported_python_wins(bin_dir: Path, tmp_path: Path) -> None:
    fake_python(bin_dir, "python3.11", "3.11.9")
    fake_python(bin_dir, "python3.13", "3.13.1")
    fake_python(bin_dir, "python3", "3.14.0")  # too new: never chosen
    proc = venv_sh(bin_dir, tmp_path / ".venv")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Python 3.13.1 (") and "newest supported" in proc.stdout
    assert (tmp_path / ".venv" / "bin" / "python").is_file()
    again = venv_sh(bin_dir, tmp_path / ".venv")
    assert again.returncode == 0 and again.stdout.strip() == f"reusing {tmp_path}/.venv (Python 3.13.1)"


def test_python_with_torch_on_disk_comes_first(bin_dir: Path, tmp_path: Path) -> None:
    fake_python(bin_dir, "python3.13", "3.13.1")
    fake_python(bin_dir, "python3.12", "3.12.3")
    fake_python(bin_dir, "python3.11", "3.11.7", local_torch=True)
    proc = venv_sh(bin_dir, tmp_path / ".venv")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Python 3.11.7 (")
    assert "pip has torch==2.13.0 for it on local disk" in proc.stdout


def test_py_names_the_interpreter(bin_dir: Path, tmp_path: Path) -> None:
    fake_python(bin_dir, "python3.13", "3.13.1")
    fake_python(bin_dir, "python3.12", "3.12.3")
    proc = venv_sh(bin_dir, tmp_path / ".venv", py="python3.12")
    assert proc.returncode == 0 and "Python 3.12.3" in proc.stdout and "named by PY" in proc.stdout


def test_no_supported_python_is_one_clear_line(bin_dir: Path, tmp_path: Path) -> None:
    fake_python(bin_dir, "python3", "3.10.12")
    fake_python(bin_dir, "python3.12", "3.12.1", runs=False)  # a pyenv shim, not selected
    proc = venv_sh(bin_dir, tmp_path / ".venv")
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("slmchat needs Python 3.11, 3.12 or 3.13 (found: ")
    assert "python3.12 (does not run)" in lines[0] and "python3 3.10.12" in lines[0]
    assert "apt install python3.12 python3.12-venv" in lines[0]
    assert "brew install python@3.13" in lines[0]
    assert not (tmp_path / ".venv").exists()


def test_missing_venv_module_names_the_package(bin_dir: Path, tmp_path: Path) -> None:
    fake_python(bin_dir, "python3.12", "3.12.3", venv_ok=False)
    proc = venv_sh(bin_dir, tmp_path / ".venv")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].endswith(
        "its venv module is missing (Debian/Ubuntu: sudo apt install python3.12-venv), "
        "then rerun make")
    assert not (tmp_path / ".venv").exists()


def test_step_prints_start_and_elapsed_and_keeps_the_exit_code(bin_dir: Path) -> None:
    env = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"}
    ok = subprocess.run(["sh", str(ROOT / "scripts" / "step.sh"), "[1/2] hello", "echo", "hi"],
                        env=env, capture_output=True, text=True, timeout=30)
    lines = ok.stdout.splitlines()
    assert ok.returncode == 0 and lines[:2] == ["==> [1/2] hello", "hi"]
    assert lines[2].startswith("    [1/2] hello: done in ") and lines[2].endswith(" s")
    bad = subprocess.run(["sh", str(ROOT / "scripts" / "step.sh"), "[2/2] fail", "false"],
                         env=env, capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "[2/2] fail: FAILED (exit 1) after" in bad.stderr
