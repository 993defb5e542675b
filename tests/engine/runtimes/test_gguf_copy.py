"""A checkpoint folder as a streamed Q4_K_M GGUF copy on llama.cpp (the large-model path):
plain Llama, and Qwen2 (q/k/v biases, untied head, or tied head over a vocabulary padded
past the tokenizer's ids as Qwen2.5's is)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slmchat.engine.model import gguf_copy
from slmchat.engine.model.spec import ModelSpec
from tests.tinymodels import make_tiny_qwen2

pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module", params=["llama", "qwen2", "qwen2-tied-padded"])
def bf16_llama(request: pytest.FixtureRequest, tiny_llama_dir: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny checkpoint saved in bf16, as checkpoints of 0.5B-3B models are: the Llama,
    a Qwen2 with an untied head, and a Qwen2 with a tied head and 37 embedding rows past
    its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = tiny_llama_dir
    if request.param != "llama":
        tied = request.param == "qwen2-tied-padded"
        src = make_tiny_qwen2(tmp_path_factory.mktemp("qwen2") / "tiny-qwen2", tied=tied,
                              vocab_pad=37 if tied else 0)
    out = tmp_path_factory.mktemp(f"bf16-{request.param}")
    model = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.bfloat16)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(src)).save_pretrained(str(out))
    return out


def test_streamed_copy_matches_the_checkpoint(bf16_llama: Path, tmp_path: Path) -> None:
    import gguf
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    assert gguf_copy.unsupported_reason(bf16_llama) is None
    path = gguf_copy.convert(bf16_llama, tmp_path)
    assert path.name == "model.Q4_K_M.gguf" and not (tmp_path / "model.bf16.gguf").exists()
    assert gguf_copy.check_copy(tmp_path) is None
    config = AutoConfig.from_pretrained(str(bf16_llama))
    reader = gguf.GGUFReader(str(path))
    arch = config.model_type
    meta = {f.name: f.contents() for f in reader.fields.values()
            if not f.name.startswith("tokenizer.ggml.")}
    assert meta["general.architecture"] == arch
    assert meta[f"{arch}.rope.freq_base"] == pytest.approx(
        config.rope_parameters["rope_theta"])
    assert meta[f"{arch}.attention.layer_norm_rms_epsilon"] == pytest.approx(config.rms_norm_eps)
    assert meta[f"{arch}.context_length"] == config.max_position_embeddings
    assert len(reader.fields["tokenizer.ggml.tokens"].data) == config.vocab_size
    names = {t.name for t in reader.tensors}
    assert ("output.weight" in names) != config.tie_word_embeddings
    if arch == "qwen2":  # the biases, kept in f32 by the quantizer
        biases = [t for t in reader.tensors if t.name.endswith(".bias")]
        assert {t.name for t in biases} == {f"blk.{i}.attn_{x}.bias" for i in range(2)
                                            for x in "qkv"}
        assert {t.tensor_type for t in biases} == {gguf.GGMLQuantizationType.F32}
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


@pytest.mark.parametrize(("config", "why"), [
    ({"architectures": ["GemmaForCausalLM"], "model_type": "gemma",
      "hidden_activation": "gelu_pytorch_tanh"}, "a GemmaForCausalLM model"),
    ({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "use_sliding_window": True},
     "sliding-window attention is not supported"),
    ({"architectures": ["MistralForCausalLM"], "model_type": "mistral"},
     "a MistralForCausalLM model, not a plain Llama"),
])
def test_other_architectures_are_refused_in_one_line(tmp_path: Path, config: dict, why: str) -> None:
    import json

    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "tokenizer.json").write_text("{}")
    reason = gguf_copy.unsupported_reason(tmp_path)
    assert reason == f"the GGUF copy takes plain Llama and Qwen2 checkpoints; {why}"
