"""The lite loader (no transformers) must behave exactly like the full one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from slmchat.engine.generation.decode import stream_generate
from slmchat.engine.generation.prompting import ChatMessage, build_prompt
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model.lite import LiteTokenizer, eligible
from slmchat.engine.model.loader import load
from slmchat.engine.model.spec import ModelSpec
from slmchat.engine.session import Engine

CONVERSATIONS = [
    [{"role": "user", "content": "Hello there"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3? ünïcode ✓"}],
]


def _check_tokenizer(folder: Path) -> None:
    from transformers import AutoTokenizer

    ref = AutoTokenizer.from_pretrained(str(folder))
    lite = LiteTokenizer(folder)
    text = "The quick brown fox — déjà vu, 12345!\n  def f(x): return x"
    for special in (True, False):
        assert lite(text, add_special_tokens=special)["input_ids"] == \
            ref(text, add_special_tokens=special)["input_ids"]
    ids = ref(text)["input_ids"]
    for skip in (True, False):
        assert lite.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip)
    assert lite.eos_token_id == ref.eos_token_id
    # The prompt inspector marks special tokens: the same set as transformers gives.
    ref_specials = set(ref.all_special_tokens) | {
        str(t.content) for t in ref.added_tokens_decoder.values() if t.special}
    assert set(lite.all_special_tokens) == ref_specials and ref_specials
    for conv in CONVERSATIONS:
        for gen in (True, False):
            assert lite.apply_chat_template(conv, add_generation_prompt=gen) == \
                ref.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
    partial = [*CONVERSATIONS[1][:-1], {"role": "user", "content": "Go on"},
               {"role": "assistant", "content": "Once upon a"}]
    assert lite.apply_chat_template(partial, continue_final_message=True) == \
        ref.apply_chat_template(partial, tokenize=False, continue_final_message=True)


def test_tokenizer_matches_transformers_tiny(tiny_llama_dir: Path) -> None:
    _check_tokenizer(tiny_llama_dir)


@pytest.mark.realmodel
def test_tokenizer_matches_transformers_default(default_model_dir: Path) -> None:
    _check_tokenizer(default_model_dir)


def test_eligibility(tiny_llama_dir: Path, tiny_gpt2_dir: Path) -> None:
    assert eligible("hf", tiny_llama_dir, ModelSpec(path=str(tiny_llama_dir)))
    assert not eligible("hf", tiny_gpt2_dir, ModelSpec(path=str(tiny_gpt2_dir)))
    assert not eligible("hf", tiny_llama_dir, ModelSpec(path=str(tiny_llama_dir), quant="cpu-int8"))
    assert not eligible("hf", tiny_llama_dir, ModelSpec(path=str(tiny_llama_dir), runner="hf"))


def test_lite_generation_equals_full(tiny_llama_dir: Path) -> None:
    spec = ModelSpec(path=str(tiny_llama_dir), device="cpu", runtime="transformers")
    full, lite = load(spec), load(spec, lite=True)
    assert lite.extra.get("lite") and not full.extra.get("lite")
    assert lite.info.n_params == full.info.n_params
    assert lite.info.context_length == full.info.context_length
    msgs = [ChatMessage("system", "Be brief."), ChatMessage("user", "The quick brown fox")]
    pf = build_prompt(full.tokenizer, msgs, 256, 32)
    pl = build_prompt(lite.tokenizer, msgs, 256, 32)
    assert pf.input_ids == pl.input_ids
    for params in (SamplingParams(temperature=0, max_new_tokens=30, ignore_eos=True),
                   SamplingParams(temperature=0.9, seed=7, max_new_tokens=30)):
        a = "".join(c.text for c in stream_generate(full.model, full.tokenizer, pf.input_ids, params))
        b = "".join(c.text for c in stream_generate(lite.model, lite.tokenizer, pl.input_ids, params))
        assert a == b and a


def test_lite_engine_prefix_reuse(tiny_llama_dir: Path) -> None:
    engine = Engine(lite=True)
    engine.load(ModelSpec(path=str(tiny_llama_dir), runtime="transformers"))
    p = SamplingParams(temperature=0, max_new_tokens=8)
    msgs = [ChatMessage("user", "Paris is")]
    reply = "".join(c.text for c in engine.stream_chat(msgs, p))
    msgs += [ChatMessage("assistant", reply), ChatMessage("user", "Berlin is")]
    assert list(engine.stream_chat(msgs, p))[-1].cached_tokens > 5


def test_lite_generate_never_imports_transformers(tiny_llama_dir: Path) -> None:
    code = ("import sys\nfrom slmchat.cli import main\n"
            f"rc = main(['generate', 'hi', '--model', {str(tiny_llama_dir)!r}, '--max-new-tokens', '3'])\n"
            "assert rc == 0, rc\n"
            "print('TRANSFORMERS' if any(m.startswith('transformers') for m in sys.modules) else 'CLEAN')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "CLEAN"


def test_config_weights_mismatch_is_refused(tiny_llama_dir: Path, tmp_path: Path) -> None:
    import json
    import shutil

    from slmchat.errors import ModelLoadError

    bad = tmp_path / "wrongshape"
    shutil.copytree(tiny_llama_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["hidden_size"] = 128
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match=r"do not match config\.json"):
        load(ModelSpec(path=str(bad), runtime="transformers"), lite=True)
