"""``slmchat remote add/list/test``, ``generate --model NAME:model`` and ``models`` with
remote profiles, against servers on loopback; no connection at all without a profile;
no key in any file slmchat writes."""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from slmchat.cli import main
from slmchat.config import settings_path
from slmchat.engine.model import remote
from tests.remotekit import OK_PIECES, stub_server
from tests.server.fakes import EchoEngine, echo_words
from tests.server.live import live_server

KEY = "sk-test-7f3a9c1e5b2d4f60"


@pytest.fixture(autouse=True)
def _no_profiles() -> Iterator[None]:
    yield
    remote.use_profiles([])


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_add_list_and_remove_a_profile(capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAB_KEY", raising=False)
    code, out, _ = _run(capsys, "remote", "add", "lab", "http://gpu-box:8000/v1",
                        "--api-key-env", "LAB_KEY", "--model", "qwen")
    assert code == 0 and "sent to gpu-box:8000" in out
    data = tomllib.loads(settings_path().read_text())
    assert data["remote"] == [{"name": "lab", "base_url": "http://gpu-box:8000/v1",
                               "api_key_env": "LAB_KEY", "kind": "openai", "models": ["qwen"],
                               "timeout_s": 120.0}]
    code, out, _ = _run(capsys, "remote", "list")
    assert code == 0 and "lab" in out and "$LAB_KEY (NOT SET)" in out
    monkeypatch.setenv("LAB_KEY", KEY)
    _, out, _ = _run(capsys, "remote", "list")
    assert "$LAB_KEY (set)" in out and KEY not in out
    code, _, err = _run(capsys, "remote", "add", "lab", "http://other/v1")
    assert code == 2 and "exists; --replace" in _one_line(err)
    assert _run(capsys, "remote", "remove", "lab")[0] == 0
    assert "remote" not in tomllib.loads(settings_path().read_text())


@pytest.mark.parametrize(("argv", "says"), [
    (("http://me:secret@host/v1",), "must not hold credentials"),
    (("ftp://host",), "must start with http:// or https://"),
    (("http://host/v1", "--api-key-env", KEY), "api_key_env"),  # a key, not a variable name
    (("http://host/v1", "--kind", "vllm"), "invalid choice"),
])
def test_add_refuses_bad_profiles_in_one_line(capsys: pytest.CaptureFixture[str],
                                              argv: tuple[str, ...], says: str) -> None:
    try:
        code, _, err = _run(capsys, "remote", "add", "lab", *argv)
    except SystemExit as exc:  # argparse's own refusals
        code, err = int(exc.code or 0), capsys.readouterr().err
    assert code == 2 and says in _one_line(err)
    assert not settings_path().exists() or KEY not in settings_path().read_text()


def test_a_key_written_into_settings_by_hand_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    settings_path().parent.mkdir(parents=True, exist_ok=True)
    settings_path().write_text(f'[[remote]]\nname = "lab"\nbase_url = "http://h/v1"\n'
                               f'api_key = "{KEY}"\n')
    code, out, err = _run(capsys, "remote", "list")
    assert code == 0 and "keys are never stored in settings.toml" in err
    assert KEY not in out + err
    code, _, err = _run(capsys, "remote", "add", "x", "http://h/v1")
    assert code == 2 and "fix" in _one_line(err)  # a file we could not read is not rewritten
    assert KEY in settings_path().read_text()


def test_remote_test_reports_a_working_profile_in_one_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    with live_server(EchoEngine()) as live:
        assert _run(capsys, "remote", "add", "lab", live.url)[0] == 0
        code, out, err = _run(capsys, "remote", "test", "lab")
    assert code == 0, err
    line = _one_line(out)
    assert line.startswith(f"lab: ok: {live.url}/v1 (openai, this machine), 1 model, echo "
                           "first token in ")


def test_remote_test_reports_each_failure_in_one_line(capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    dead = sock.getsockname()[1]
    sock.close()
    monkeypatch.delenv("STUB_KEY", raising=False)
    with stub_server(key=KEY) as stub:
        for args in (("unset", stub.url, "--api-key-env", "STUB_KEY"),
                     ("wrong", stub.url, "--api-key-env", "WRONG_KEY"),
                     ("dead", f"http://127.0.0.1:{dead}/v1"),
                     ("good", stub.url, "--api-key-env", "STUB_KEY2")):
            assert _run(capsys, "remote", "add", *args)[0] == 0
        monkeypatch.setenv("WRONG_KEY", "sk-not-this-one")
        monkeypatch.setenv("STUB_KEY2", KEY)
        code, out, err = _run(capsys, "remote", "test")
    assert code == 1
    assert _one_line(out).startswith("good: ok: ")
    lines = err.strip().splitlines()
    assert len(lines) == 3, err
    assert lines[0] == "slmchat: unset: the environment variable STUB_KEY (api_key_env) is not set"
    assert lines[1].startswith("slmchat: wrong: 127.0.0.1:") and "refused the key (401" in lines[1]
    assert "check the key in WRONG_KEY" in lines[1]
    assert lines[2].startswith(f"slmchat: dead: cannot connect to 127.0.0.1:{dead}")
    assert KEY not in out + err


def test_generate_and_models_with_a_profile(capsys: pytest.CaptureFixture[str]) -> None:
    with live_server(EchoEngine(reply_tokens=5)) as live:
        assert _run(capsys, "remote", "add", "lab", live.url, "--kind", "ollama")[0] == 0
        code, out, err = _run(capsys, "generate", "say this", "--model", "lab:echo", "--stats",
                              "--max-new-tokens", "5")
        assert code == 0, err
        assert out == "".join(echo_words("say this", 5)) + "\n"
        stats = err.strip().splitlines()[-1]
        assert "runtime=remote" in stats and "new_tokens=5" in stats
        assert "model=remote://lab/echo" in stats
        code, out, _ = _run(capsys, "models", "--no-hf-cache", "--no-tools", "lab")
        assert code == 0
        row = next(ln for ln in out.splitlines() if ln.startswith("lab: echo"))
        assert "remote" in row and "remote://lab/echo" in row
    # the server is gone: the listing says so in its row, generate in one line
    code, out, _ = _run(capsys, "models", "--no-hf-cache", "--no-tools", "lab")
    assert code == 0 and "lab: *" in out and "cannot connect" in out
    code, _, err = _run(capsys, "generate", "hi", "--model", "lab:echo")
    assert code == 2 and "lab: cannot connect to 127.0.0.1:" in _one_line(err)


def test_generate_says_a_dropped_stream_in_one_line_and_keeps_the_text(
        capsys: pytest.CaptureFixture[str]) -> None:
    with stub_server() as stub:
        assert _run(capsys, "remote", "add", "stub", stub.url)[0] == 0
        code, out, err = _run(capsys, "generate", "hi", "--model", "stub:drop")
    assert code == 1
    assert out == "".join(OK_PIECES[:2]) + "\n"
    line = [ln for ln in err.splitlines() if ln.startswith("slmchat: error")]
    assert len(line) == 1 and "stub: the connection to 127.0.0.1:" in line[0]


class _Counter:
    """Every connection attempt and name lookup of this process, loopback included."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
        real_lookup = socket.getaddrinfo

        def connect(sock: socket.socket, address: object) -> object:
            self.calls.append(f"connect {address!r}")
            return real_connect(sock, address)  # type: ignore[arg-type]

        def connect_ex(sock: socket.socket, address: object) -> object:
            self.calls.append(f"connect_ex {address!r}")
            return real_connect_ex(sock, address)  # type: ignore[arg-type]

        def lookup(*args: object, **kwargs: object) -> object:
            self.calls.append(f"getaddrinfo {args[0]!r}")
            return real_lookup(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(socket.socket, "connect", connect)
        monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
        monkeypatch.setattr(socket, "getaddrinfo", lookup)


def test_without_a_profile_nothing_is_contacted(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    from slmchat.config import load_settings
    from slmchat.engine.model.discovery import discover, resolve_name

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    counter = _Counter(monkeypatch)
    assert _run(capsys, "models")[0] == 0
    assert _run(capsys, "remote", "list")[0] == 0
    assert _run(capsys, "remote", "test")[0] == 0
    settings, _ = load_settings()
    assert [e for e in discover(settings) if e.source == "remote"] == []
    with pytest.raises(Exception, match="no local model is named"):
        resolve_name("lab:llama3", settings)
    assert counter.calls == []
    # and the counter does see a connection when a profile exists (it can fail)
    monkeypatch.setenv("SLMCHAT_REMOTE", '[{"name": "lab", "base_url": "http://127.0.0.1:9/v1"}]')
    assert _run(capsys, "models", "--no-hf-cache", "--no-tools")[0] == 0
    assert any("127.0.0.1" in c for c in counter.calls)


def _files_holding(root: Path, text: bytes) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            try:
                if text in path.read_bytes():
                    found.append(str(path))
            except OSError:
                pass
    return found


def test_no_key_in_any_file_slmchat_writes(capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                           isolated_dirs: Path) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SLMCHAT_CACHE_DIR", str(cache))
    monkeypatch.setenv("STUB_KEY", KEY)
    with stub_server(key=KEY) as stub:
        assert _run(capsys, "remote", "add", "stub", stub.url, "--api-key-env", "STUB_KEY")[0] == 0
        assert _run(capsys, "remote", "test", "stub")[0] == 0
        code, out, _ = _run(capsys, "generate", "hi", "--model", "stub:ok")
        assert code == 0 and out.strip() == "".join(OK_PIECES)
        assert _run(capsys, "models", "--no-hf-cache", "--no-tools")[0] == 0
        assert all(r["auth"] == f"Bearer {KEY}" for r in stub.requests)  # it was sent
    written = [isolated_dirs / "data", isolated_dirs / "config", cache]
    assert (isolated_dirs / "config" / "settings.toml").is_file()
    for root in written:
        if root.exists():
            assert _files_holding(root, KEY.encode()) == [], root
    assert "STUB_KEY" in (isolated_dirs / "config" / "settings.toml").read_text()
    assert os.environ["STUB_KEY"] == KEY
