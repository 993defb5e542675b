"""One definition of the sampling ranges; settings, CLI flags, the settings panel and
SamplingParams all refuse and accept the same values."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from slmchat.cli import main
from slmchat.config import GenerationSettings
from slmchat.engine.generation.sampling import SAMPLING_RANGES, Range, SamplingParams
from slmchat.errors import InvalidParameterError
from slmchat.tui.widgets.settings_panel import FIELDS, params_from


def _edges(r: Range) -> tuple[list[float], list[float]]:
    """(inside values, outside values) at each end of the range."""
    eps = 1 if r.kind is int else 1e-6
    inside: list[float] = []
    outside: list[float] = []
    assert r.lo is not None
    inside.append(r.lo + eps if r.lo_open else r.lo)
    outside.append(r.lo if r.lo_open else r.lo - eps)
    if r.hi is not None:
        inside.append(r.hi - eps if r.hi_open else r.hi)
        outside.append(r.hi if r.hi_open else r.hi + eps)
    return [r.kind(v) for v in inside], [r.kind(v) for v in outside]


@pytest.mark.parametrize("r", SAMPLING_RANGES, ids=lambda r: r.name)
def test_every_consumer_agrees_on_the_edges(r: Range) -> None:
    inside, outside = _edges(r)
    for value in inside:
        SamplingParams(**{r.name: value}).validate()
        GenerationSettings(**{r.name: value})
        params_from({r.name: value})
    for value in outside:
        with pytest.raises(InvalidParameterError, match=r.name):
            SamplingParams(**{r.name: value}).validate()
        with pytest.raises(ValidationError):
            GenerationSettings(**{r.name: value})
        with pytest.raises(InvalidParameterError):
            params_from({r.name: value})


def test_defaults_and_panel_fields_come_from_the_same_place() -> None:
    settings, params = GenerationSettings(), SamplingParams()
    for r in SAMPLING_RANGES:
        assert getattr(settings, r.name) == getattr(params, r.name)
    assert [f[0] for f in FIELDS] == [r.name for r in SAMPLING_RANGES]
    assert all(r.describe() in f[3] for f, r in zip(FIELDS, SAMPLING_RANGES, strict=True))


@pytest.mark.parametrize("flag,value", [("--seed", str(2**63)), ("--max-new-tokens", "1000001"),
                                        ("--top-p", "0"), ("--temperature", "nan")])
def test_cli_flags_refuse_out_of_range_before_loading(flag: str, value: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["generate", "hi", "--model", "/nonexistent/model", flag, value])
    err = capsys.readouterr().err
    assert code == 2 and "must be in" in err and "does not exist" not in err
