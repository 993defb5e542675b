"""A checkpoint folder as a streamed Q4_K_M GGUF copy on llama.cpp (the large-model path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slmchat.engine.model import gguf_copy
from slmchat.engine.model.spec import ModelSpec

pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def bf16_llama(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama saved in bf16, as checkpoints of 0.5B-3B models are."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("bf16-llama")
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), dtype=torch.bfloat16)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(tiny_llama_dir)).save_pretrained(str(out))
    return out


def test_streamed_copy_matches_the_checkpoint(bf16_llama: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf_copy.convert(bf16_llama, tmp_path)
    assert path.name == "model.Q4_K_M.gguf" and not (tmp_path / "model.bf16.gguf").exists()
    assert gguf_copy.check_copy(tmp_path) is None
    from slmchat.engine.model.llamacpp import LlamaCppModel, LlamaCppTokenizer

    model = LlamaCppModel(path, 256, 1)
    tok = LlamaCppTokenizer(model)
    hf_tok = AutoTokenizer.from_pretrained(str(bf16_llama))
    text = "def add(a, b):\n    return a + b\n<|im_start|>user"
    want_ids = hf_tok(text, add_special_tokens=False)["input_ids"]
    assert tok(text, add_special_tokens=False)["input_ids"] == want_ids
    ref = AutoModelForCausalLM.from_pretrained(str(bf16_llama), dtype=torch.float32)
    ids = hf_tok("The capital of France is", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        want = ref(torch.tensor([ids])).logits[0, -1].numpy()
    model.llama.eval(ids)
    got = np.ctypeslib.as_array(model.lib.llama_get_logits_ith(model.llama._ctx.ctx, -1),
                                shape=(model.n_vocab,))
    # 4-bit weights (tensors too narrow for K-quants fall back to Q5_0/Q8_0 inside llama.cpp):
    # the logits follow the bf16 model closely, not exactly.
    assert np.corrcoef(want, got)[0, 1] > 0.98


def test_large_checkpoints_choose_the_gguf_copy(bf16_llama: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from slmchat.engine import runtimes
    from slmchat.engine.runtimes import Source

    cpu = ModelSpec(path=str(bf16_llama), device="cpu")
    assert runtimes.choose(cpu, Source("hf", bf16_llama)).name == "onnx"  # small: int8 copy
    monkeypatch.setattr(gguf_copy, "LARGE_PARAMS", 1000)
    assert runtimes.choose(cpu, Source("hf", bf16_llama)).name == "llamacpp"
    lm = runtimes.load(cpu)
    assert lm.info.runtime == "llamacpp" and lm.info.kind == "hf"
    assert lm.info.path == str(bf16_llama) and lm.info.runtime_copy
    again = runtimes.load(cpu)  # cached: no second conversion
    assert again.info.runtime_copy == lm.info.runtime_copy


def test_streamed_copy_of_a_llama_2_tokenizer_splits_like_it(tmp_path: Path) -> None:
    """A Llama with Llama 2's sentencepiece-style tokenizer (as TinyLlama-1.1B has): the
    copy holds it as llama.cpp's "llama" vocabulary, which splits the export check's texts
    as the checkpoint's tokenizer does (before, the copy refused the tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from slmchat.engine.model.gguf_header import read_header
    from slmchat.engine.model.llamacpp import LlamaCppModel, LlamaCppTokenizer
    from slmchat.engine.tools.gguf_writer import check_texts
    from tests.tinymodels import build_spm_tokenizer, make_tiny_llama

    src = make_tiny_llama(tmp_path / "src", tokenizer=build_spm_tokenizer("llama"))
    bf16 = tmp_path / "bf16"
    AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.bfloat16).save_pretrained(str(bf16))
    hf_tok = AutoTokenizer.from_pretrained(str(src))
    hf_tok.save_pretrained(str(bf16))
    (tmp_path / "copy").mkdir()
    path = gguf_copy.convert(bf16, tmp_path / "copy")
    assert read_header(path).meta["tokenizer.ggml.model"] == "llama"
    tok = LlamaCppTokenizer(LlamaCppModel(path, 256, 1))
    for text in check_texts(hf_tok):
        assert tok(text, add_special_tokens=False)["input_ids"] == \
            hf_tok(text, add_special_tokens=False)["input_ids"], text
