"""ONNX copies: choosing the runtime, caching, corruption, fallback, start-up without torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from slmchat.engine.model import onnx
from slmchat.engine.model.loader import load
from slmchat.engine.model.spec import ModelSpec
from slmchat.engine.runtimes import load as chat_load
from slmchat.engine.session import Engine
from slmchat.errors import ModelLoadError


@pytest.fixture(scope="module")
def tiny_copy(tiny_llama_dir: Path) -> Path:
    """The cached int8 copy of the tiny Llama (built once; the cache is shared by runs)."""
    lm = chat_load(ModelSpec(path=str(tiny_llama_dir)))
    assert lm.info.runtime == "onnx", lm.info.warnings
    return Path(lm.extra["onnx_dir"])


def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: Path | None,
                   source: Path | None = None) -> Path:
    """A cache folder of its own; ``seed`` (a built copy) is placed where a load of
    ``source`` looks for its copy first."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SLMCHAT_CACHE_DIR", str(cache))
    if seed is not None and source is not None:
        shutil.copytree(seed, onnx.copy_path(source.name, source, None))
    return cache


def _seeded(cache: Path) -> Path:
    (copy,) = [p for p in (cache / "onnx").iterdir() if p.is_dir()]
    return copy


def test_runtime_choice(tiny_llama_dir: Path, tiny_copy: Path) -> None:
    path = str(tiny_llama_dir)
    assert chat_load(ModelSpec(path=path)).info.runtime == "onnx"
    # Tools (perplexity, quantize, export) and the exact reference paths keep transformers.
    assert load(ModelSpec(path=path)).info.runtime == "transformers"
    for spec in (ModelSpec(path=path, runtime="transformers"), ModelSpec(path=path, dtype="fp32"),
                 ModelSpec(path=path, runner="hf"), ModelSpec(path=path, quant="cpu-int8")):
        assert chat_load(spec).info.runtime == "transformers", spec
    with pytest.raises(ModelLoadError, match="cannot run this model: --quant cpu-int8"):
        chat_load(ModelSpec(path=path, runtime="onnx", quant="cpu-int8"))


def test_copy_marker_and_provenance(tiny_llama_dir: Path, tiny_copy: Path) -> None:
    assert onnx.check_copy(tiny_copy) is None
    meta = json.loads((tiny_copy / onnx.MARKER).read_text())
    assert meta["precision"] == "int8" and meta["last_token_logits"] is False
    assert meta["logits_window"] == onnx.LOGITS_WINDOW == 16  # drafts verify, no LM head per prompt row
    info = chat_load(ModelSpec(path=str(tiny_llama_dir))).info
    full = load(ModelSpec(path=str(tiny_llama_dir))).info
    assert info.fingerprint == full.fingerprint == meta["source_fingerprint"]
    assert info.runtime_copy and info.runtime_copy != info.fingerprint
    assert info.context_length == full.context_length
    assert info.has_chat_template


def test_half_built_and_truncated_copies_are_rebuilt(tiny_llama_dir: Path, tiny_copy: Path,
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cache = _private_cache(tmp_path, monkeypatch, tiny_copy, tiny_llama_dir)
    copy = _seeded(cache)
    data = copy / "model.onnx.data"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    assert "wrong size" in (onnx.check_copy(copy) or "")
    (copy / onnx.MARKER).unlink()  # and a builder killed before it wrote its marker
    assert "half-built" in (onnx.check_copy(copy) or "")
    messages: list[str] = []
    lm = chat_load(ModelSpec(path=str(tiny_llama_dir)),
              progress=lambda msg, frac: messages.append(msg))
    assert lm.info.runtime == "onnx" and not lm.info.warnings
    assert Path(lm.extra["onnx_dir"]) == copy and onnx.check_copy(copy) is None
    assert any("rebuilding" in m for m in messages) and any("ready" in m for m in messages)
    assert not list((cache / "onnx").glob(".*tmp-*"))  # no temp folder left behind


def test_a_copy_that_does_not_load_is_rebuilt_once(tiny_llama_dir: Path, tiny_copy: Path,
                                                   tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cache = _private_cache(tmp_path, monkeypatch, tiny_copy, tiny_llama_dir)
    copy = _seeded(cache)
    graph = copy / "model.onnx"
    graph.write_bytes(b"\0" * graph.stat().st_size)  # same size: only loading can tell
    builds: list[Path] = []

    def fake_build(source, out, adapter=None, progress=None, full_logits=False, overwrite=False):
        builds.append(out)
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(tiny_copy, out)
        return out

    monkeypatch.setattr(onnx, "build_copy", fake_build)
    lm = chat_load(ModelSpec(path=str(tiny_llama_dir)))
    assert lm.info.runtime == "onnx" and builds == [copy]


def test_builder_failure_falls_back_with_one_line(tiny_llama_dir: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _private_cache(tmp_path, monkeypatch, None)

    def broken(cmd, n_layers, progress):
        raise onnx.OnnxUnavailable("the ONNX builder failed: RuntimeError: boom")

    monkeypatch.setattr(onnx, "_run_builder", broken)
    info = Engine().load(ModelSpec(path=str(tiny_llama_dir)))
    assert info.runtime == "transformers"
    assert len(info.warnings) == 1 and "boom" in info.warnings[0]
    assert "transformers runtime" in info.warnings[0] and "\n" not in info.warnings[0]
    assert not list((tmp_path / "cache" / "onnx").glob("*"))[1:]  # only the lock file at most


def test_unsupported_architecture_falls_back(tiny_gpt2_dir: Path) -> None:
    info = Engine().load(ModelSpec(path=str(tiny_gpt2_dir)))
    assert info.runtime == "transformers"
    assert len(info.warnings) == 1 and "does not support GPT2LMHeadModel" in info.warnings[0]


def test_the_real_builder_refuses_a_broken_config_cleanly(tiny_llama_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _private_cache(tmp_path, monkeypatch, None)
    bad = tmp_path / "bad"
    shutil.copytree(tiny_llama_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["hidden_size"] = 96  # no longer matches the weights: the builder must fail
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(onnx.OnnxUnavailable, match="the ONNX builder failed"):
        onnx.ensure_copy("bad", bad)
    assert not [p for p in (tmp_path / "cache" / "onnx").iterdir() if p.is_dir()]


def test_adapter_is_merged_then_converted(tiny_llama_dir: Path, tmp_path: Path) -> None:
    import numpy as np
    import torch

    from slmchat.engine.runtimes import backend_for
    from tests.modelkit import make_lora

    adapter = make_lora(tiny_llama_dir, tmp_path / "lora", seed=1)
    lm = chat_load(ModelSpec(path=str(tiny_llama_dir), adapter=str(adapter)))
    assert lm.info.runtime == "onnx" and lm.info.adapter
    ref = load(ModelSpec(path=str(tiny_llama_dir), adapter=str(adapter), device="cpu"))
    base = load(ModelSpec(path=str(tiny_llama_dir), device="cpu"))
    ids = list(ref.tokenizer("Paris is the capital of")["input_ids"])
    ours = backend_for(lm).new_state().extend(ids)
    with torch.inference_mode():
        want = ref.model(torch.tensor([ids])).logits[:, -1].numpy()
        plain = base.model(torch.tensor([ids])).logits[:, -1].numpy()
    assert np.abs(ours - want).max() < np.abs(ours - plain).max()  # the adapter is in the copy
    assert np.corrcoef(ours[0], want[0])[0, 1] > 0.99


def test_generate_on_a_cached_copy_imports_no_other_runtime(
        tiny_llama_dir: Path, tiny_copy: Path) -> None:
    code = ("import sys\nfrom slmchat.cli import main\n"
            f"rc = main(['generate', 'hi', '--model', {str(tiny_llama_dir)!r}, "
            "'--max-new-tokens', '3', '--stats'])\n"
            "assert rc == 0, rc\n"
            "heavy = sorted(m for m in sys.modules\n"
            "               if m.split('.')[0] in ('torch', 'transformers', 'llama_cpp'))\n"
            "print('HEAVY', heavy[:5])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "HEAVY []"
    assert "runtime=onnx precision=int8" in out.stderr


def test_cli_unsupported_model_prints_one_warning(tiny_gpt2_dir: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "slmchat", "generate", "hi", "--model",
                          str(tiny_gpt2_dir), "--max-new-tokens", "2", "--stats"],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    warnings = [ln for ln in out.stderr.splitlines() if ln.startswith("slmchat: warning:")]
    assert len(warnings) == 1 and "transformers runtime" in warnings[0]
    assert "Traceback" not in out.stderr and "runtime=transformers" in out.stderr


def test_pending_copy_tells_a_command_what_to_build_up_front(
        tiny_llama_dir: Path, tiny_gpt2_dir: Path, tiny_copy: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from slmchat.engine.runtimes.onnx import pending_copy

    spec = ModelSpec(path=str(tiny_llama_dir))
    assert pending_copy(spec) is None  # cached (the shared test cache)
    _private_cache(tmp_path, monkeypatch, None)
    assert pending_copy(spec) == (tiny_llama_dir.name, tiny_llama_dir, None)
    for other in (spec.with_(runtime="transformers"), spec.with_(quant="cpu-int8"),
                  spec.with_(dtype="fp32"), ModelSpec(path=str(tiny_gpt2_dir))):
        assert pending_copy(other) is None, other
    key = tiny_copy.name.rsplit("-", 1)[-1]
    shutil.copytree(tiny_copy, tmp_path / "cache" / "onnx" / f"renamed-int8-{key}")
    assert pending_copy(spec) is None  # the same copy under another name counts


def test_same_size_damage_is_found_by_content_and_rebuilt(tiny_llama_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from slmchat.engine.generation.prompting import ChatMessage
    from slmchat.engine.generation.sampling import SamplingParams

    cache = _private_cache(tmp_path, monkeypatch, None)
    lm = chat_load(ModelSpec(path=str(tiny_llama_dir)))  # a fresh build: hashes recorded
    copy = Path(lm.extra["onnx_dir"])
    assert (cache / "onnx") in copy.parents
    meta = json.loads((copy / onnx.MARKER).read_text())
    assert set(meta["sha256"]) == set(meta["files"])
    assert onnx.check_copy(copy, deep=True) is None
    data = copy / "model.onnx.data"
    size = data.stat().st_size
    with data.open("r+b") as fh:  # flip bytes inside the weights; the size stays
        fh.seek(size // 3)
        fh.write(bytes(b ^ 0xFF for b in fh.read(size // 3)))
    assert data.stat().st_size == size
    assert onnx.check_copy(copy) == (
        "model.onnx.data is damaged (its content differs from when it was built)")
    messages: list[str] = []
    engine = Engine()
    engine.load(ModelSpec(path=str(tiny_llama_dir)), progress=lambda m, f: messages.append(m))
    assert engine.info is not None and engine.info.runtime == "onnx"
    assert any(m.startswith("rebuilding the ONNX copy") and "model.onnx.data is damaged" in m
               for m in messages), messages
    assert onnx.check_copy(copy, deep=True) is None
    params = SamplingParams(temperature=0.0, max_new_tokens=4)
    chunks = list(engine.stream_chat([ChatMessage("user", "hi")], params))
    assert chunks[-1].new_tokens > 0


def test_an_untouched_copy_is_not_hashed_again(tiny_llama_dir: Path, tiny_copy: Path,
                                               tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cache = _private_cache(tmp_path, monkeypatch, tiny_copy, tiny_llama_dir)
    copy = _seeded(cache)
    onnx.write_marker(copy, {"source": str(tiny_llama_dir)})
    hashed: list[str] = []
    real = onnx._sha256
    monkeypatch.setattr(onnx, "_sha256", lambda p: hashed.append(p.name) or real(p))
    assert onnx.check_copy(copy) is None and hashed == []  # stat unchanged: no reading
    assert onnx.check_copy(copy, deep=True) is None and "model.onnx.data" in hashed


def test_a_cached_copy_without_hashes_is_rebuilt_once_with_them(
        tiny_llama_dir: Path, tiny_copy: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    cache = _private_cache(tmp_path, monkeypatch, tiny_copy, tiny_llama_dir)
    copy = _seeded(cache)
    meta = json.loads((copy / onnx.MARKER).read_text())
    for key in ("sha256", "checked"):
        meta.pop(key, None)
    (copy / onnx.MARKER).write_text(json.dumps(meta))  # as a build before hashes leaves it
    messages: list[str] = []
    lm = chat_load(ModelSpec(path=str(tiny_llama_dir)),
              progress=lambda msg, frac: messages.append(msg))
    assert lm.info.runtime == "onnx" and Path(lm.extra["onnx_dir"]) == copy
    assert any("built without content hashes" in m for m in messages), messages
    assert "sha256" in json.loads((copy / onnx.MARKER).read_text())
    messages.clear()
    chat_load(ModelSpec(path=str(tiny_llama_dir)),
         progress=lambda msg, frac: messages.append(msg))
    assert not any("rebuilding" in m for m in messages)  # once


def test_a_copy_reports_the_parameters_of_its_checkpoint(tiny_llama_dir: Path) -> None:
    """Issue 26 #8: the onnx runtime reported 0 parameters (status, models panel, server)."""
    from transformers import AutoModelForCausalLM

    lm = chat_load(ModelSpec(path=str(tiny_llama_dir)))
    assert lm.info.runtime == "onnx"
    ref = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    assert lm.info.n_params == sum(p.numel() for p in ref.parameters())


def _damage_unnoticed(copy: Path, source: Path) -> None:
    """Flip bytes inside model.onnx.data and record the new file times as checked, as
    bit rot that keeps the times looks to the cheap check at load: the copy loads."""
    onnx.write_marker(copy, {"source": str(source)})  # hashes of the whole copy
    data = copy / "model.onnx.data"
    size = data.stat().st_size
    with data.open("r+b") as fh:
        fh.seek(size // 3)
        fh.write(bytes(b ^ 0xFF for b in fh.read(size // 3)))
    meta = json.loads((copy / onnx.MARKER).read_text())
    meta["checked"]["model.onnx.data"] = onnx._stat_key(data)
    (copy / onnx.MARKER).write_text(json.dumps(meta))
    assert onnx.check_copy(copy) is None  # the cheap check at load does not see it


def test_an_empty_reply_checks_the_copy_once_and_marks_it_for_a_rebuild(
        tiny_llama_dir: Path, tiny_copy: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 21: flipped weights give a reply with no text; the copy is then hashed once,
    the damage is said in one line and the next load rebuilds it."""
    from slmchat.engine.generation.prompting import ChatMessage
    from slmchat.engine.generation.sampling import SamplingParams

    cache = _private_cache(tmp_path, monkeypatch, tiny_copy, tiny_llama_dir)
    copy = _seeded(cache)
    _damage_unnoticed(copy, tiny_llama_dir)
    engine = Engine()
    engine.load(ModelSpec(path=str(tiny_llama_dir)))
    assert engine.info is not None and engine.info.runtime == "onnx"
    params = SamplingParams(temperature=0.0, max_new_tokens=6)
    hashed: list[str] = []
    real = onnx._sha256
    monkeypatch.setattr(onnx, "_sha256", lambda p: hashed.append(p.name) or real(p))
    chunks = list(engine.stream_chat([ChatMessage("user", "hi")], params))
    assert "".join(c.text for c in chunks) == ""
    assert [c.warning for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1].warning == (
        f"the ONNX copy {copy.name} is damaged (model.onnx.data is damaged (its content "
        "differs from when it was built)): it is rebuilt on the next load")
    assert "model.onnx.data" in hashed
    hashed.clear()
    again = list(engine.stream_chat([ChatMessage("user", "hi")], params))
    assert again[-1].warning is None and hashed == []  # once per load
    assert onnx.check_copy(copy) is not None  # marked: the cheap check now hashes it
    messages: list[str] = []
    engine.load(ModelSpec(path=str(tiny_llama_dir)), progress=lambda m, f: messages.append(m))
    assert any(m.startswith("rebuilding the ONNX copy") for m in messages), messages
    assert onnx.check_copy(copy, deep=True) is None
    whole = list(engine.stream_chat([ChatMessage("user", "hi")], params))
    assert whole[-1].warning is None and whole[-1].new_tokens > 0


def test_cli_generate_says_a_damaged_copy_in_one_line(
        tiny_llama_dir: Path, tiny_copy: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    copy = _seeded(_private_cache(tmp_path, monkeypatch, tiny_copy, tiny_llama_dir))
    _damage_unnoticed(copy, tiny_llama_dir)
    out = subprocess.run([sys.executable, "-m", "slmchat", "generate", "hi", "--model",
                          str(tiny_llama_dir), "--max-new-tokens", "4", "--temperature", "0"],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    warnings = [ln for ln in out.stderr.splitlines() if ln.startswith("slmchat: warning:")]
    assert warnings == [f"slmchat: warning: the ONNX copy {copy.name} is damaged "
                        "(model.onnx.data is damaged (its content differs from when it was "
                        "built)): it is rebuilt on the next load"], out.stderr
    assert onnx.check_copy(copy) is not None  # the next load rebuilds it


def test_runtimes_without_a_copy_have_nothing_to_say(tiny_llama_dir: Path) -> None:
    from slmchat.engine.runtimes.llamacpp import RUNTIME as LLAMACPP
    from slmchat.engine.runtimes.transformers import RUNTIME as TRANSFORMERS

    lm = load(ModelSpec(path=str(tiny_llama_dir)))
    assert TRANSFORMERS.after_empty_reply(lm) is None
    assert LLAMACPP.after_empty_reply(lm) is None
