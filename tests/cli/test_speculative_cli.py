"""--speculative on generate and serve, the setting, and what --stats reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmchat.cli import main
from tests.tinymodels import CORPUS


def _stats(err: str) -> dict[str, str]:
    line = err.strip().splitlines()[-1]
    assert line.startswith("stats "), err
    return dict(kv.split("=", 1) for kv in line.split()[1:])


def test_generate_lookup_is_the_plain_reply_and_stats_count_drafts(
        capsys: pytest.CaptureFixture[str], tiny_llama_dir: Path) -> None:
    common = ["generate", CORPUS[:300], "--model", str(tiny_llama_dir), "--runtime",
              "transformers", "--temperature", "0", "--repetition-penalty", "1",
              "--max-new-tokens", "40", "--stats"]
    outs, stats = [], []
    for mode in ("off", "lookup"):
        assert main([*common, "--speculative", mode]) == 0
        out, err = capsys.readouterr()
        outs.append(out)
        stats.append(_stats(err))
    assert outs[0] == outs[1]
    assert stats[0]["speculative"] == "off" and stats[0]["drafted"] == "0"
    assert stats[1]["speculative"] == "lookup"
    assert int(stats[1]["drafted"]) >= int(stats[1]["accepted"]) > 0


def test_setting_picks_the_mode_and_a_bad_setting_warns(
        capsys: pytest.CaptureFixture[str], tiny_llama_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from slmchat.config import load_settings

    monkeypatch.setenv("SLMCHAT_GENERATION__SPECULATIVE", "off")
    assert load_settings()[0].generation.speculative == "off"
    assert main(["generate", "The quick", "--model", str(tiny_llama_dir), "--runtime",
                 "transformers", "--max-new-tokens", "4", "--stats"]) == 0
    assert _stats(capsys.readouterr().err)["speculative"] == "off"
    monkeypatch.setenv("SLMCHAT_GENERATION__SPECULATIVE", "sideways")
    settings, problem = load_settings()
    assert problem and "speculative" in problem and settings.generation.speculative == "auto"


def test_serve_refuses_a_bad_mode_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "--speculative", "nope", "--port", "0", "--model", "/no/such"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("slmchat: error:"), err
