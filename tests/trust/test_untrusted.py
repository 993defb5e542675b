"""Untrusted checkpoints stay harmless: templates are sandboxed, pickle payloads never
run (refused without --allow-pickle, weights_only with it), remote code is never loaded.

Every payload tries to create a marker file; the marker must never appear.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from slmchat.engine.generation.prompting import ChatMessage, build_prompt
from slmchat.engine.model.loader import load
from slmchat.engine.model.spec import ModelSpec
from slmchat.errors import ModelLoadError
from tests.trust.counts import record

PKG = Path(__file__).resolve().parents[2] / "slmchat"


class Payload:
    """Unpickling this runs os.system: what a malicious .bin would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "untrusted content ran code"


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _template(folder: Path, template: str) -> None:
    cfg_path = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["chat_template"] = template
    cfg_path.write_text(json.dumps(cfg))
    for extra in ("chat_template.jinja", "chat_template.json"):
        (folder / extra).unlink(missing_ok=True)


TEMPLATES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.system('touch MARKER') }}",
    "{{ joiner.__init__.__globals__.os.popen('touch MARKER').read() }}",
    "{{ namespace.__init__.__globals__['os'].system('touch MARKER') }}",
    "{{ lipsum.__globals__['os'].system('touch MARKER') }}",
    "{{ self._TemplateReference__context.cycler.__init__.__globals__.os.system('touch MARKER') }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ messages.__class__.__init__.__globals__ }}",
    "{{ raise_exception.__globals__['os'].system('touch MARKER') }}",
    "{{ (messages|attr('__class__')).__mro__ }}",
]


@pytest.mark.parametrize("template", TEMPLATES)
def test_malicious_chat_template_is_an_error_not_code(
    template: str, tiny_llama_dir: Path, tmp_path: Path, marker: Path,
) -> None:
    folder = _copy(tiny_llama_dir, tmp_path / "evil-template")
    _template(folder, template.replace("MARKER", str(marker)))
    lm = load(ModelSpec(path=str(folder), device="cpu", dtype="fp32"))
    record(inputs=1)
    with pytest.raises(Exception) as info:
        build_prompt(lm.tokenizer, [ChatMessage("user", "hi")], 256, 8)
    # jinja2's sandbox refuses the attribute (SecurityError) or it is undefined.
    assert type(info.value).__name__ in ("SecurityError", "UndefinedError", "TemplateError",
                                         "TypeError", "InvalidParameterError"), info.value
    assert not marker.exists()


def test_pickle_payload_refused_without_flag(tiny_llama_dir: Path, tmp_path: Path,
                                             marker: Path) -> None:
    folder = _copy(tiny_llama_dir, tmp_path / "evil-bin")
    (folder / "model.safetensors").unlink()
    with (folder / "pytorch_model.bin").open("wb") as fh:
        pickle.dump({"model.embed_tokens.weight": Payload(marker)}, fh)
    with pytest.raises(ModelLoadError, match="pickle"):
        load(ModelSpec(path=str(folder), device="cpu", dtype="fp32"))
    record(inputs=1)


@pytest.mark.parametrize("suffix", [".bin", ".pt"])
def test_pickle_payload_does_not_run_even_with_allow_pickle(
    suffix: str, tiny_llama_dir: Path, tmp_path: Path, marker: Path,
) -> None:
    import torch

    folder = _copy(tiny_llama_dir, tmp_path / "evil-allowed")
    (folder / "model.safetensors").unlink()
    name = "pytorch_model.bin" if suffix == ".bin" else "model.pt"
    torch.save({"model.embed_tokens.weight": Payload(marker)}, folder / name)
    with pytest.raises(ModelLoadError) as info:
        load(ModelSpec(path=str(folder), device="cpu", dtype="fp32", allow_pickle=True))
    assert "\n" not in str(info.value)
    record(inputs=1)


def test_plain_pickle_weights_load_with_flag(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """The allow flag is usable for honest .bin checkpoints (weights_only accepts them)."""
    import torch
    from safetensors.torch import load_file

    folder = _copy(tiny_llama_dir, tmp_path / "honest-bin")
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    lm = load(ModelSpec(path=str(folder), device="cpu", dtype="fp32", allow_pickle=True))
    assert any("weights_only" in w for w in lm.info.warnings)
    got = lm.model.state_dict()["model.embed_tokens.weight"]
    assert torch.equal(got, state["model.embed_tokens.weight"])


def test_safetensors_preferred_over_a_poisoned_bin(tiny_llama_dir: Path, tmp_path: Path,
                                                   marker: Path) -> None:
    folder = _copy(tiny_llama_dir, tmp_path / "mixed")
    with (folder / "pytorch_model.bin").open("wb") as fh:
        pickle.dump(Payload(marker), fh)
    load(ModelSpec(path=str(folder), device="cpu", dtype="fp32"))
    load(ModelSpec(path=str(folder), device="cpu", dtype="fp32", allow_pickle=True))


def test_adapter_with_only_pickle_weights_is_refused(tiny_llama_dir: Path, tmp_path: Path,
                                                     marker: Path) -> None:
    ad = tmp_path / "evil-adapter"
    ad.mkdir()
    (ad / "adapter_config.json").write_text(json.dumps({
        "base_model_name_or_path": str(tiny_llama_dir), "peft_type": "LORA", "r": 4,
        "lora_alpha": 8, "target_modules": ["q_proj"], "task_type": "CAUSAL_LM"}))
    with (ad / "adapter_model.bin").open("wb") as fh:
        pickle.dump(Payload(marker), fh)
    for spec in (ModelSpec(path=str(ad)), ModelSpec(path=str(tiny_llama_dir), adapter=str(ad)),
                 ModelSpec(path=str(ad), allow_pickle=True)):
        with pytest.raises(ModelLoadError):
            load(spec.with_(device="cpu", dtype="fp32"))
    record(inputs=3)


def test_remote_code_never_runs(tiny_llama_dir: Path, tmp_path: Path, marker: Path) -> None:
    """auto_map pointing at Python files in the folder: ignored, with a warning."""
    folder = _copy(tiny_llama_dir, tmp_path / "remote-code")
    code = f"import os\nos.system('touch {marker}')\n"
    for name in ("modeling_evil.py", "configuration_evil.py", "tokenization_evil.py"):
        (folder / name).write_text(code)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig",
                       "AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(cfg))
    tcfg = json.loads((folder / "tokenizer_config.json").read_text())
    tcfg["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
    (folder / "tokenizer_config.json").write_text(json.dumps(tcfg))
    try:
        lm = load(ModelSpec(path=str(folder), device="cpu", dtype="fp32"))
    except ModelLoadError as exc:  # refusing is fine too; running the code is not
        assert "\n" not in str(exc)
    else:
        assert any("Python files" in w for w in lm.info.warnings)
    record(inputs=1)


def test_trust_remote_code_is_never_enabled_in_the_package() -> None:
    pattern = re.compile(r"trust_remote_code[\"']?\s*[=:]\s*([\w.]+)")
    hits, seen = [], 0
    for path in PKG.rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for value in pattern.findall(line):
                seen += 1
                if value != "False":
                    hits.append(f"{path.relative_to(PKG)}:{n}: {line.strip()}")
    assert seen >= 3 and hits == []


@pytest.mark.parametrize("template", TEMPLATES)
def test_malicious_template_in_lite_generate_path(
    template: str, tiny_llama_dir: Path, tmp_path: Path, marker: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`slmchat generate` renders templates with its own sandbox (engine/lite.py): same
    guarantees - a one-line error and exit 2, no code run."""
    from slmchat.cli import main

    folder = _copy(tiny_llama_dir, tmp_path / "evil-template-lite")
    _template(folder, template.replace("MARKER", str(marker)))
    record(inputs=1)
    rc = main(["generate", "hi", "--model", str(folder), "--max-new-tokens", "2"])
    err = capsys.readouterr().err
    assert rc == 2, err
    # A first run may print the one-time ONNX conversion line before the error.
    errors = [ln for ln in err.strip().splitlines() if ln.startswith("slmchat: error:")]
    assert "Traceback" not in err and len(errors) == 1 and err.strip().endswith(errors[0])
    assert not marker.exists()
