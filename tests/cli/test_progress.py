"""The first start's conversion bar: the terminal bar, and the stages the engine reports."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from slmchat.commands.common import prepare_default_model
from slmchat.commands.progress import TerminalBar
from slmchat.engine.fsutil import in_use_lock, is_in_use
from slmchat.engine.model import default as default_model
from slmchat.engine.model.spec import ModelSpec


def test_plain_output_prints_one_line_per_stage() -> None:
    out = io.StringIO()
    with TerminalBar("converting", stream=out, tty=False) as bar:
        bar("reading", 0.0)
        bar("reading", 0.2)  # same stage: no new line
        bar("saving", 0.9)
        bar("saving", 0.5)  # never moves back
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["converting:   0%  reading", "converting:  90%  saving"]
    assert lines[2].startswith("converting: done in ") and len(lines) == 3
    assert "\r" not in out.getvalue()


def test_terminal_output_redraws_one_line() -> None:
    out = io.StringIO()
    with TerminalBar("converting", stream=out, tty=True, width=10) as bar:
        bar("weights", 0.5)
        assert bar.line().startswith("converting  [#####.....]  50%  weights  ")
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert "\r\x1b[2Kconverting  [#####.....]  50%  weights" in text
    assert "converting: done in " in text


def test_failed_work_leaves_stderr_to_the_one_line_error() -> None:
    out = io.StringIO()
    with pytest.raises(RuntimeError), TerminalBar("converting", stream=out, tty=False):
        raise RuntimeError("boom")
    assert out.getvalue() == ""  # bad input: the caller's single error line, nothing else
    tty = io.StringIO()
    with pytest.raises(RuntimeError), TerminalBar("converting", stream=tty, tty=True):
        raise RuntimeError("boom")
    assert tty.getvalue().endswith("\r\x1b[2K")  # the bar is wiped, no line is left


def _fake_convert(source: Path, target: Path, progress=None) -> None:
    for what, at in default_model.STAGES.items():
        if progress:
            progress(what, at)
    target.mkdir(parents=True)
    (target / "model.safetensors").write_bytes(b"")
    (target / default_model.MARKER).write_text(json.dumps(
        {"version": default_model.CONVERSION_VERSION}))
    if progress:
        progress("done", 1.0)


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SLMCHAT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(default_model, "convert_gguf", _fake_convert)
    return tmp_path / "cache"


def test_ensure_default_model_reports_stages_and_holds_the_copy(empty_cache: Path) -> None:
    heard: list[tuple[str, float]] = []
    target = default_model.ensure_default_model(progress=lambda w, f: heard.append((w, f)))
    fractions = [f for _, f in heard]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert [w for w, _ in heard][:-1] == list(default_model.STAGES)
    assert in_use_lock(target).is_file() and is_in_use(target)
    heard.clear()
    assert default_model.ensure_default_model(progress=lambda w, f: heard.append((w, f))) == target
    assert heard == []  # already converted: nothing to report


def test_first_start_draws_the_bar_before_the_app(empty_cache: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    prepare_default_model(ModelSpec(path="default"))
    err = capsys.readouterr().err
    assert "converting the default model (once):   0%  imports" in err
    assert "converting the default model (once): done in " in err
    prepare_default_model(ModelSpec(path="default"))  # second start: silent
    prepare_default_model(ModelSpec(path="/some/folder"))  # not the default model: silent
    assert capsys.readouterr().err == ""


def test_transformers_tensor_bar_is_silenced_and_reported() -> None:
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    original = gguf_utils.tqdm
    heard: list[float] = []
    with default_model._tensor_progress(lambda _w, f: heard.append(f)):
        assert gguf_utils.tqdm is not original
        assert list(gguf_utils.tqdm(range(40), desc="x")) == list(range(40))
    assert gguf_utils.tqdm is original
    assert heard[0] == default_model.STAGES["tensors"] and len(heard) == 3
    assert all(f < default_model.STAGES["tokenizer"] for f in heard)


def test_bar_fits_the_terminal_width() -> None:
    bar = TerminalBar("converting the default model (once)", stream=io.StringIO(), tty=True)
    bar("reading the weights of a model with a very long stage name indeed", 0.5)
    for columns in (200, 100, 60, 40, 20):
        assert len(bar.line(columns)) < columns
    assert bar.line(200).startswith("converting the default model (once)  [")
    assert bar.line(60).startswith("[############............]  50%  reading")


def test_conversion_reports_the_imports_and_the_gguf_read_as_their_own_stages(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 18: the bar sat at 0% 'reading the settings' for ~19 s while torch and
    transformers were imported and the GGUF was read; each is a stage of its own now,
    reported before its work starts."""
    import transformers

    heard: list[tuple[str, float]] = []

    class Stop(Exception):
        pass

    def config(*_a: object, **_k: object) -> object:
        heard.append(("(config read)", -1.0))
        return object()

    def weights(*_a: object, **_k: object) -> object:
        heard.append(("(weights read)", -1.0))
        raise Stop

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", config)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", weights)
    with pytest.raises(Stop):
        default_model.convert_gguf(tmp_path / "model.gguf", tmp_path / "out",
                                   lambda what, at: heard.append((what, at)))
    assert heard == [("importing torch and transformers", default_model.STAGES["imports"]),
                     ("reading the GGUF file", default_model.STAGES["settings"]),
                     ("(config read)", -1.0),
                     ("reading the weights", default_model.STAGES["weights"]),
                     ("(weights read)", -1.0)]
    assert 0.0 == default_model.STAGES["imports"] < default_model.STAGES["settings"] \
        < default_model.STAGES["weights"]
    assert not (tmp_path / "out").exists()  # nothing half-built is left
