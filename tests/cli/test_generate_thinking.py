"""``slmchat generate --think/--no-think``: the switch reaches the template; the reasoning
goes to stderr and the answer alone to stdout."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmchat.cli import main
from tests.tinymodels import make_thinking_llama


@pytest.fixture(scope="module")
def thinking_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_thinking_llama(tmp_path_factory.mktemp("thinking"))


def test_think_sends_reasoning_to_stderr_and_the_answer_to_stdout(
        capsys: pytest.CaptureFixture[str], thinking_dir: Path) -> None:
    code = main(["generate", "Where is the fox?", "--model", str(thinking_dir), "--think",
                 "--temperature", "0", "--max-new-tokens", "20", "--stats"])
    out, err = capsys.readouterr()
    assert code == 0
    assert out == "Berlin dog\n"
    assert "Paris fox" in err and "Berlin" not in err.replace(str(thinking_dir), "")
    fields = dict(kv.split("=", 1) for kv in err.splitlines()[-1].split()[1:])
    assert 0 < int(fields["reasoning_tokens"]) < int(fields["new_tokens"])


def test_no_think_renders_the_switch_off(capsys: pytest.CaptureFixture[str],
                                         thinking_dir: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from slmchat.engine.session import Engine

    seen: list[object] = []
    real = Engine.stream_chat

    def spy(self, messages, params, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs.get("thinking"))
        seen.append(self.preview_prompt(messages, params, thinking=kwargs.get("thinking")).text)
        return real(self, messages, params, *args, **kwargs)

    monkeypatch.setattr(Engine, "stream_chat", spy)
    code = main(["generate", "Where is the fox?", "--model", str(thinking_dir), "--no-think",
                 "--temperature", "0", "--max-new-tokens", "4"])
    capsys.readouterr()
    assert code == 0
    assert seen[0] is False and str(seen[1]).endswith("<think>\n\n</think>\n\n")


def test_think_on_a_model_without_the_switch_warns_once(
        capsys: pytest.CaptureFixture[str], tiny_llama_dir: Path) -> None:
    code = main(["generate", "The quick brown", "--model", str(tiny_llama_dir), "--no-think",
                 "--temperature", "0", "--max-new-tokens", "3"])
    _, err = capsys.readouterr()
    assert code == 0
    warnings = [line for line in err.splitlines() if "thinking switch" in line]
    assert len(warnings) == 1 and warnings[0].startswith("slmchat: warning:")
    assert "--no-think is ignored" in warnings[0]
