"""Shared fixtures: isolated user folders, tiny random models, the real default model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slmchat.engine.offline import ensure_offline
from tests import netguard
from tests.tinymodels import make_tiny_gpt2, make_tiny_llama

ensure_offline()


NETGUARD_LOG = Path(os.environ.get("TMPDIR", "/tmp")) / f"slmchat-netguard-{os.getpid()}.log"


def pytest_configure(config: pytest.Config) -> None:
    # Offline by construction: any non-loopback connection or DNS lookup fails, here
    # and (through sitecustomize) in every Python subprocess the tests start.
    netguard.install()
    NETGUARD_LOG.unlink(missing_ok=True)
    site = str(Path(__file__).parent / "netguard_site")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (site, str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH")) if p)
    os.environ["SLMCHAT_NETGUARD"] = "1"
    os.environ["SLMCHAT_NETGUARD_LOG"] = str(NETGUARD_LOG)


def _attempts() -> list[str]:
    logged = NETGUARD_LOG.read_text().splitlines() if NETGUARD_LOG.exists() else []
    return logged


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _attempts() and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    attempts = _attempts()
    terminalreporter.write_line(
        f"network: {len(attempts)} outbound connection attempts"
        + (f" (FAIL): {attempts[:5]}" if attempts else " (offline by construction)")
    )
# The converted default model is cached once per machine (~40 s to build) and shared by
# test runs; everything else a test writes goes to its own tmp folders.
REAL_CACHE = Path(os.environ.get("SLMCHAT_TEST_CACHE", Path.home() / ".cache" / "slmchat-tests"))


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every slmchat user folder into tmp_path (settings, data, cache)."""
    root = tmp_path / "slmchat-home"
    monkeypatch.setenv("SLMCHAT_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("SLMCHAT_CONFIG_DIR", str(root / "config"))
    monkeypatch.setenv("SLMCHAT_CACHE_DIR", str(REAL_CACHE))
    for key in list(os.environ):
        if key.startswith("SLMCHAT_") and "__" in key:
            monkeypatch.delenv(key)
    # Other tools' model stores (Ollama, LM Studio, ...) are looked for in an empty home.
    monkeypatch.setenv("SLMCHAT_TOOLS_HOME", str(root / "home"))
    for key in ("OLLAMA_MODELS", "LLAMA_CACHE"):
        monkeypatch.delenv(key, raising=False)
    return root


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The real SmolLM2-135M-Instruct, converted once into the shared test cache."""
    os.environ["SLMCHAT_CACHE_DIR"] = str(REAL_CACHE)
    from slmchat.engine.model.default import ensure_default_model

    return ensure_default_model()


@pytest.fixture(scope="session")
def default_engine(default_model_dir: Path):
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.session import Engine

    engine = Engine()
    engine.load(ModelSpec(path=str(default_model_dir), dtype="fp32", device="cpu"))
    return engine


@pytest.fixture
def one_torch_thread(monkeypatch: pytest.MonkeyPatch):
    """One torch thread: tests share a small machine, and a resume comparison needs the
    killed subprocess and the in-process runs to use the same thread count."""
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("SLMCHAT_THREADS", "1")
    yield
    torch.set_num_threads(before)


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    """A small training text file."""
    from tests.tinymodels import CORPUS

    f = tmp_path / "notes.txt"
    f.write_text(CORPUS)
    return f


class SmallDisk:
    """A 2 MB tmpfs mounted for one test; ``fill`` leaves only ``free`` bytes on it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.filler = root / ".filler"

    def free(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def fill(self, free: int = 24 * 1024) -> None:
        with open(self.filler, "ab") as f:
            while (room := self.free() - free) > 0:
                try:
                    f.write(b"\0" * min(room, 1 << 16))
                    f.flush()
                except OSError:
                    break

    def unfill(self) -> None:
        self.filler.unlink(missing_ok=True)


@pytest.fixture
def small_disk(tmp_path: Path):
    """A really full disk (the issue's 2 MB tmpfs): SQLite sees SQLITE_FULL as it does on
    a full data folder. Mounting needs root; without it the test is skipped."""
    import subprocess

    root = tmp_path / "small-disk"
    root.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(root)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield SmallDisk(root)
    finally:
        subprocess.run(["umount", "-l", str(root)], capture_output=True)
