"""`slmchat export --ollama NAME / --lm-studio`: the GGUF goes into the stores those tools
read, in their layouts, and slmchat's own store reader lists and runs it by name."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from slmchat.engine.model.discovery import resolve_name, scan_tool_stores
from slmchat.engine.model.spec import ModelSpec
from slmchat.engine.model.toolstores import ollama_models, ollama_write_root
from slmchat.engine.tools.export import StoreTargets, export_model
from slmchat.engine.tools.ollama_template import measure, stop_strings
from slmchat.engine.tools.toolstore_export import human_number, parse_ollama_name
from slmchat.errors import InvalidParameterError
from tests.tinymodels import CHATML_TEMPLATE, build_tokenizer

ROOT = Path(__file__).resolve().parents[3]
SMOL_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)
# Llama-2: the system prompt goes inside the first [INST]; no per-role TEMPLATE can say it.
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}"
    "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}"
)
CONVO = [{"role": "system", "content": "Be {{brief}}."}, {"role": "user", "content": "Hi there"},
         {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"}]


def _tokenizer(template: str):
    tok = build_tokenizer()
    tok.chat_template = template
    return tok


@pytest.mark.parametrize("template", [CHATML_TEMPLATE, SMOL_TEMPLATE, LLAMA3_TEMPLATE])
def test_measured_template_prints_what_jinja_prints(template: str) -> None:
    tok = _tokenizer(template)
    shape = measure(tok)
    for convo in (CONVO, CONVO[1:], CONVO[1:2]):
        want = tok.apply_chat_template(convo, tokenize=False, add_generation_prompt=True)
        assert shape.render(convo) == want
    go = shape.go_template()
    assert go.count("{{ range .Messages }}") == 1 and go.count("{{ .Content }}") == 3
    assert '{{ else if eq .Role "assistant" }}<|' in go


def test_smollm_default_system_becomes_system_and_stops_are_the_special_tokens() -> None:
    tok = _tokenizer(SMOL_TEMPLATE)
    shape = measure(tok)
    assert shape.default_system == ("You are a helpful AI assistant named SmolLM, trained by "
                                    "Hugging Face")
    assert shape.header == ""
    assert stop_strings(shape, tok) == ["<|im_start|>", "<|im_end|>"]
    llama3 = measure(_tokenizer(LLAMA3_TEMPLATE))
    assert llama3.header == "<|endoftext|>" and llama3.default_system is None


def test_template_that_depends_on_position_is_refused() -> None:
    with pytest.raises(InvalidParameterError, match="cannot be converted for Ollama"):
        measure(_tokenizer(LLAMA2_TEMPLATE))


def test_go_template_quotes_action_delimiters() -> None:
    from slmchat.engine.tools.ollama_template import ChatShape

    shape = ChatShape("{{x}}", {r: ("<", ">") for r in ("system", "user", "assistant")}, "", None)
    assert shape.go_template().startswith('{{ "{{x}}" }}{{ range .Messages }}')


def test_ollama_names_follow_ollama_rules() -> None:
    assert parse_ollama_name("tiny") == ("registry.ollama.ai", "library", "tiny", "latest")
    assert parse_ollama_name("me/tiny:q4") == ("registry.ollama.ai", "me", "tiny", "q4")
    assert parse_ollama_name("hf.co/me/tiny:Q4_K_M") == ("hf.co", "me", "tiny", "Q4_K_M")
    for bad in ("", "a b", "../x", "x:", "a/b/c/d", "my.ns/x", "-x", "x:t@g"):
        with pytest.raises(InvalidParameterError, match="not an Ollama model name"):
            parse_ollama_name(bad)
    assert [human_number(n) for n in (134_515_008, 1_500_000_000, 7_000_000_000, 30_000)] == [
        "134.52M", "1.5B", "7B", "30K"]


def _check_manifest(root: Path, manifest: Path) -> dict:
    """Every digest is the sha256 of its blob and every size its length, as Ollama checks."""
    data = json.loads(manifest.read_text())
    assert data["schemaVersion"] == 2
    assert data["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert data["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    for layer in [data["config"], *data["layers"]]:
        blob = root / "blobs" / layer["digest"].replace(":", "-")
        raw = blob.read_bytes()
        assert layer["digest"] == "sha256:" + hashlib.sha256(raw).hexdigest()
        assert layer["size"] == len(raw)
    return data


def _layer_text(root: Path, data: dict, media: str) -> str:
    (layer,) = [x for x in data["layers"] if x["mediaType"] == media]
    return (root / "blobs" / layer["digest"].replace(":", "-")).read_text()


@pytest.mark.parametrize("gguf_type", ["q8_0", "q4_k_m"])
def test_ollama_export_is_listed_and_answers_by_name(tiny_llama_dir: Path, gguf_type: str,
                                                     isolated_dirs: Path) -> None:
    pytest.importorskip("llama_cpp")
    name = f"tiny-export:{gguf_type}"
    res = export_model(ModelSpec(path=str(tiny_llama_dir)), gguf_type=gguf_type,
                       stores=StoreTargets(ollama=name))
    root = ollama_write_root()
    assert res.ollama == root / "manifests" / "registry.ollama.ai" / "library" / "tiny-export" / gguf_type
    assert res.check is not None and res.check.tokens_match
    data = _check_manifest(root, res.ollama)
    media = [x["mediaType"] for x in data["layers"]]
    assert media == ["application/vnd.ollama.image.model", "application/vnd.ollama.image.template",
                     "application/vnd.ollama.image.params"]  # the tiny template has no SYSTEM
    config = json.loads((root / "blobs" / data["config"]["digest"].replace(":", "-")).read_text())
    assert config["model_format"] == "gguf" and config["model_family"] == "llama"
    assert config["file_type"] == gguf_type.upper()
    assert json.loads(_layer_text(root, data, "application/vnd.ollama.image.params")) == {
        "stop": ["<|im_start|>", "<|im_end|>"]}
    assert "{{ range .Messages }}" in _layer_text(root, data, "application/vnd.ollama.image.template")
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no scratch left
    (listed,) = [m for m in ollama_models(root) if m.name == name]
    assert listed.problem is None and listed.extra["template"] is True
    entries = [e for e in scan_tool_stores() if e.source == "ollama"]
    assert [e.name for e in entries] == [name] and entries[0].problem is None
    assert resolve_name(name) == str(listed.path)
    env = {**os.environ, "SLMCHAT_TOOLS_HOME": str(isolated_dirs / "home")}
    models = subprocess.run([sys.executable, "-m", "slmchat", "models"], capture_output=True,
                            text=True, cwd=ROOT, env=env, timeout=120)
    assert name in models.stdout, models.stdout + models.stderr
    proc = subprocess.run([sys.executable, "-m", "slmchat", "generate", "--model", name,
                           "The quick brown", "-t", "0", "--max-new-tokens", "8", "--stats"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # llama.cpp ran the blob by its Ollama name (the tiny random model's reply is blank
    # lines, so the stats line says that it answered)
    stats = proc.stderr.strip().splitlines()[-1]
    assert "new_tokens=8" in stats and "runtime=llamacpp" in stats, proc.stderr
    assert f"precision={gguf_type.upper()}" in stats


def test_gguf_with_modelfile_and_lm_studio(tiny_llama_dir: Path, tmp_path: Path,
                                           isolated_dirs: Path) -> None:
    out = tmp_path / "tiny.gguf"
    res = export_model(ModelSpec(path=str(tiny_llama_dir)), gguf=out, gguf_type="q8_0",
                       modelfile=True, stores=StoreTargets(lm_studio="me/tiny-GGUF"))
    assert res.modelfile == tmp_path / "tiny.Modelfile"
    text = res.modelfile.read_text()
    assert text.startswith(f"FROM {out}\nTEMPLATE \"\"\"{{{{ range .Messages }}}}")
    assert 'PARAMETER stop "<|im_start|>"\nPARAMETER stop "<|im_end|>"\n' in text
    lms = isolated_dirs / "home" / ".lmstudio" / "models"
    assert res.lm_studio is not None and res.lm_studio.parent == lms / "me" / "tiny-GGUF"
    assert res.lm_studio.name.endswith("-Q8_0.gguf")
    assert res.lm_studio.read_bytes() == out.read_bytes()
    (entry,) = [e for e in scan_tool_stores() if e.source == "lm-studio"]
    assert entry.name == f"me/tiny-GGUF/{res.lm_studio.name}" and entry.problem is None
    assert entry.architecture == "llama"


def test_store_export_bad_inputs(tiny_llama_dir: Path, capsys: pytest.CaptureFixture[str],
                                 isolated_dirs: Path, tmp_path: Path) -> None:
    from slmchat.cli import main

    spec = ModelSpec(path=str(tiny_llama_dir))
    for argv, message in (
        (["--ollama", "bad name"], "not an Ollama model name"),
        (["--lm-studio", "justone"], "PUBLISHER/REPO"),
        (["--modelfile"], "give --gguf too"),
    ):
        assert main(["export", str(tiny_llama_dir), *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err
    home = isolated_dirs / "home"
    assert not home.exists() or not any(home.rglob("*.gguf"))
    export_model(spec, gguf_type="q8_0", stores=StoreTargets(ollama="taken"), verify=False)
    with pytest.raises(InvalidParameterError, match="already has a model named 'taken'"):
        export_model(spec, gguf_type="q8_0", stores=StoreTargets(ollama="taken"))
    again = export_model(spec, gguf_type="q8_0", stores=StoreTargets(ollama="taken"),
                         overwrite=True, verify=False)
    assert again.ollama is not None

    # A template that cannot become a TEMPLATE stops the export before anything is written.
    odd = tmp_path / "odd"
    shutil.copytree(tiny_llama_dir, odd)
    config = json.loads((odd / "tokenizer_config.json").read_text())
    config["chat_template"] = LLAMA2_TEMPLATE
    (odd / "tokenizer_config.json").write_text(json.dumps(config))
    for f in odd.glob("chat_template.j*"):
        f.write_text(LLAMA2_TEMPLATE)
    before = sorted(p.name for p in (ollama_write_root() / "blobs").iterdir())
    with pytest.raises(InvalidParameterError, match="cannot be converted for Ollama"):
        export_model(ModelSpec(path=str(odd)), gguf_type="q8_0", stores=StoreTargets(ollama="odd"))
    assert sorted(p.name for p in (ollama_write_root() / "blobs").iterdir()) == before
