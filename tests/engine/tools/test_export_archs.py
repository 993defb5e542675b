"""GGUF export beyond plain Llama: Qwen2 (attention biases, NEOX rotary, untied head),
Gemma (norms as 1 + w, scaled embeddings, GELU, tied head, head_dim x heads != hidden) and
Phi-3 (fused qkv and gate/up, untied head, partial rotary as Phi-4-mini). Each output
loads back (transformers, and llama.cpp where it is installed) and follows the source
model within the quant's tolerance."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from slmchat.engine.model.gguf_header import read_header
from slmchat.engine.model.loader import load
from slmchat.engine.model.spec import ModelSpec
from slmchat.engine.tools.export import export_model
from slmchat.engine.tools.gguf_writer import TOKENIZE_TEXTS, VERIFY_PROMPTS, check_texts
from slmchat.errors import InvalidParameterError
from tests.tinymodels import (
    build_spm_tokenizer,
    make_tiny_gemma,
    make_tiny_gemma2,
    make_tiny_llama,
    make_tiny_phi3,
    make_tiny_qwen2,
)

# llama.cpp against the source model, per type: least Pearson correlation of the last
# position's logits, and greedy continuation tokens that must be the source's. Only f16
# keeps a random tiny model's near-tied logits in order (q8_0 flips one at token 3).
TOLERANCE = {"f16": (0.999, 12), "q8_0": (0.99, 0), "q6_k": (0.95, 0), "q5_k_m": (0.95, 0),
             "q4_k_m": (0.9, 0)}
GREEDY_TOKENS = 12
CHAT = [{"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Germany?"}]


@pytest.fixture(scope="module")
def tiny_qwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_qwen2(tmp_path_factory.mktemp("qwen2") / "tiny-qwen2")


@pytest.mark.parametrize("gguf_type", ["f16", "q8_0"])
def test_qwen2_round_trip_keeps_biases(tiny_qwen2_dir: Path, tmp_path: Path,
                                       gguf_type: str) -> None:
    out = tmp_path / f"qwen2-{gguf_type}.gguf"
    res = export_model(ModelSpec(path=str(tiny_qwen2_dir)), gguf=out, gguf_type=gguf_type)
    assert res.check is not None and res.check.tokens_match
    assert res.check.top1_agreement >= (0.98 if gguf_type == "f16" else 0.9)
    if gguf_type == "f16":
        assert res.check.max_abs_diff < 0.01
    header = read_header(out)
    assert header.meta["general.architecture"] == "qwen2"
    assert header.meta["qwen2.block_count"] == 2
    assert header.meta["qwen2.attention.head_count_kv"] == 2
    import gguf

    names = {t.name for t in gguf.GGUFReader(str(out)).tensors}
    assert {"blk.0.attn_q.bias", "blk.1.attn_k.bias", "blk.1.attn_v.bias",
            "output.weight"} <= names


def test_unsupported_qwen2_variants_are_refused(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    from slmchat.engine.model.gguf_layout import check_exportable

    config = load(ModelSpec(path=str(tiny_qwen2_dir), device="cpu")).model.config
    config.use_sliding_window = True
    with pytest.raises(InvalidParameterError, match="sliding-window"):
        check_exportable(config)


def _llama_cpp_logits(model, ids: list[int]):
    import numpy as np

    model.llama.reset()
    model.llama._ctx.kv_cache_seq_rm(-1, 0, -1)
    model.llama.eval(ids)
    return np.ctypeslib.as_array(model.lib.llama_get_logits_ith(model.llama._ctx.ctx, -1),
                                 shape=(model.n_vocab,)).copy()


def _greedy_llama_cpp(model, ids: list[int], n: int) -> list[int]:
    out = list(ids)
    for _ in range(n):
        out.append(int(_llama_cpp_logits(model, out).argmax()))
    return out[len(ids):]


@pytest.mark.parametrize("gguf_type", list(TOLERANCE))
def test_qwen2_runs_in_llama_cpp_like_the_source(tiny_qwen2_dir: Path, tmp_path: Path,
                                                 gguf_type: str) -> None:
    """llama.cpp itself loads each quant type; its logits follow the source model and,
    for f16, its greedy continuation is the source model's."""
    pytest.importorskip("llama_cpp")

    out = tmp_path / f"qwen2-{gguf_type}.gguf"
    export_model(ModelSpec(path=str(tiny_qwen2_dir)), gguf=out, gguf_type=gguf_type)
    _assert_llama_cpp_follows_source(tiny_qwen2_dir, out, gguf_type)


def _assert_llama_cpp_follows_source(folder: Path, out: Path, gguf_type: str,
                                     f16_max_diff: float | None = None) -> None:
    """llama.cpp on ``out`` tokenizes as the source does (the prompts, the export check's
    other texts: spaces, newlines, accents, emoji, and a chat prompt from the file's own
    template, its special tokens parsed as the runtime does), its last-position logits
    correlate with the source's above the quant type's bound (and, for f16 where
    ``f16_max_diff`` is given, stay within it), and where the type asks for it its greedy
    continuation is the source model's."""
    import numpy as np

    from slmchat.engine.model.llamacpp import LlamaCppModel, LlamaCppTokenizer

    src = load(ModelSpec(path=str(folder), device="cpu", dtype="fp32"))
    model = LlamaCppModel(out, 256, 1)
    tok = LlamaCppTokenizer(model)
    min_corr, greedy = TOLERANCE[gguf_type]
    texts = check_texts(src.tokenizer)
    assert set(VERIFY_PROMPTS) <= set(texts)
    chat = tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert chat == src.tokenizer.apply_chat_template(CHAT, tokenize=False,
                                                     add_generation_prompt=True)
    for text in (*texts, chat):
        assert tok(text, add_special_tokens=False)["input_ids"] == \
            src.tokenizer(text, add_special_tokens=False)["input_ids"], text
    for prompt in VERIFY_PROMPTS:
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        got = _llama_cpp_logits(model, ids)
        with torch.inference_mode():
            want = src.model(input_ids=torch.tensor([ids])).logits[0, -1].numpy()
        assert np.corrcoef(want, got)[0, 1] > min_corr
        if gguf_type == "f16" and f16_max_diff is not None:
            assert np.abs(want - got).max() < f16_max_diff
        if greedy:
            with torch.inference_mode():
                ref = src.model.generate(torch.tensor([ids]), max_new_tokens=greedy,
                                         do_sample=False, eos_token_id=None)[0, len(ids):]
            assert _greedy_llama_cpp(model, ids, greedy) == ref.tolist()


PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PHI3_PROJECTIONS = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]  # fused


def _lora(base_dir: Path, out: Path, targets: list[str] = PROJECTIONS) -> Path:
    """A LoRA on every projection (q and k included: their rows are permuted for Llama)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(str(base_dir))
    config = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, target_modules=targets)
    get_peft_model(base, config).save_pretrained(str(out))
    return out


@pytest.fixture(scope="module", params=["llama", "qwen2", "gemma", "gemma2", "phi3"])
def lora_case(request: pytest.FixtureRequest, tiny_llama_dir: Path, tiny_qwen2_dir: Path,
              tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    arch = request.param
    base = {"llama": lambda: tiny_llama_dir, "qwen2": lambda: tiny_qwen2_dir,
            "gemma": lambda: make_tiny_gemma(tmp_path_factory.mktemp("gemma") / "gemma"),
            "gemma2": lambda: make_tiny_gemma2(tmp_path_factory.mktemp("gemma2") / "gemma2"),
            "phi3": lambda: make_tiny_phi3(tmp_path_factory.mktemp("phi3") / "phi3")}[arch]()
    targets = PHI3_PROJECTIONS if arch == "phi3" else PROJECTIONS
    return arch, base, _lora(base, tmp_path_factory.mktemp("lora") / "adapter", targets)


def test_gguf_lora_adapter_layout(lora_case: tuple[str, Path, Path], tmp_path: Path) -> None:
    import gguf

    arch, _, adapter = lora_case
    out = tmp_path / "adapter.gguf"
    res = export_model(ModelSpec(path=str(adapter)), gguf_lora=out)
    assert res.gguf_lora == out and res.gguf is None and not res.merged
    reader = gguf.GGUFReader(str(out))
    meta = {f.name: f.contents() for f in reader.fields.values() if f.types}
    assert meta["general.type"] == "adapter" and meta["adapter.type"] == "lora"
    assert meta["adapter.lora.alpha"] == 8.0 and meta["general.architecture"] == arch
    shapes = {t.name: tuple(int(x) for x in t.shape) for t in reader.tensors}
    projections = len(PHI3_PROJECTIONS if arch == "phi3" else PROJECTIONS)
    assert len(shapes) == 2 * projections * 2  # projections x 2 layers, a and b each
    # gguf lists dims fastest first: lora_a is (r x in) -> [in, r], lora_b (out x r) -> [r, out]
    if arch == "phi3":  # q, k, v in one (4 heads x 16 + 2 x 2 kv heads x 16 rows)
        assert shapes["blk.0.attn_qkv.weight.lora_b"] == (4, 128)
        assert shapes["blk.0.ffn_up.weight.lora_b"] == (4, 256)  # gate and up
    else:
        assert shapes["blk.0.attn_q.weight.lora_a"] == (64, 4)
    assert shapes["blk.1.ffn_down.weight.lora_b"] == (4, 64)
    with pytest.raises(InvalidParameterError, match="give an adapter folder"):
        export_model(ModelSpec(path=str(lora_case[1])), gguf_lora=tmp_path / "x.gguf")


def test_gguf_lora_adapter_in_llama_cpp_equals_the_merged_model(
        lora_case: tuple[str, Path, Path], tmp_path: Path) -> None:
    """llama.cpp runs base GGUF + GGUF adapter like the merged model (f16 base)."""
    pytest.importorskip("llama_cpp")
    import llama_cpp
    import numpy as np
    from llama_cpp import Llama

    _, base, adapter = lora_case
    base_gguf, lora_gguf = tmp_path / "base.gguf", tmp_path / "adapter.gguf"
    export_model(ModelSpec(path=str(base)), gguf=base_gguf, gguf_type="f16")
    export_model(ModelSpec(path=str(adapter)), gguf_lora=lora_gguf)
    merged = load(ModelSpec(path=str(adapter), device="cpu", dtype="fp32")).model
    merged = merged.merge_and_unload().eval()
    plain = Llama(model_path=str(base_gguf), n_ctx=128, n_threads=1, verbose=False)
    tuned = Llama(model_path=str(base_gguf), lora_path=str(lora_gguf), n_ctx=128, n_threads=1,
                  verbose=False)
    for prompt in VERIFY_PROMPTS:
        ids = tuned.tokenize(prompt.encode(), add_bos=False, special=False)
        with torch.inference_mode():
            want = merged(input_ids=torch.tensor([ids])).logits[0, -1].numpy()
        got = []
        for llm in (plain, tuned):
            llm.reset()
            llm._ctx.kv_cache_seq_rm(-1, 0, -1)
            llm.eval(ids)
            got.append(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1),
                                             shape=(want.shape[0],)).copy())
        assert np.corrcoef(want, got[1])[0, 1] > 0.999
        assert np.abs(want - got[1]).max() < 0.05
        assert np.abs(want - got[0]).max() > 0.05  # the adapter changes the reply


# --- Gemma and Phi-3: written as convert_hf_to_gguf does, checked in llama.cpp ----------

# Phi-3-mini's added tokens (after its Llama 2 vocabulary); llama.cpp looks for some of
# them in a model named "phi3" (gguf_writer._loadable_name).
PHI3_ADDED = ("<|endoftext|>", "<|assistant|>", "<|end|>", "<|user|>")
GEMMA_ADDED = ("<start_of_turn>", "<end_of_turn>")
NEW_ARCHS = {
    "gemma": lambda folder: make_tiny_gemma(folder),
    "gemma2": lambda folder: make_tiny_gemma2(folder),
    "phi3": lambda folder: make_tiny_phi3(folder),
    "phi3-partial-rotary": lambda folder: make_tiny_phi3(folder, partial_rotary=0.5),
    # Their own sentencepiece-style tokenizers, written as llama.cpp's "llama" vocabulary.
    "gemma-spm": lambda folder: make_tiny_gemma(
        folder, tokenizer=build_spm_tokenizer("gemma", added=GEMMA_ADDED)),
    "gemma2-spm": lambda folder: make_tiny_gemma2(
        folder, tokenizer=build_spm_tokenizer("gemma", added=GEMMA_ADDED)),
    # vocab_size past the tokenizer, as Phi-3-mini's 32064 for 32011 tokens.
    "phi3-spm": lambda folder: make_tiny_phi3(
        folder, tokenizer=build_spm_tokenizer("llama", added=PHI3_ADDED), vocab_size=512),
    "llama-spm": lambda folder: make_tiny_llama(folder, tokenizer=build_spm_tokenizer("llama")),
    "llama-metaspace": lambda folder: make_tiny_llama(
        folder, tokenizer=build_spm_tokenizer("metaspace")),
}
# add_space_prefix each sentencepiece-style case must have.
SPACE_PREFIX = {"gemma-spm": False, "gemma2-spm": False, "phi3-spm": True, "llama-spm": True,
                "llama-metaspace": True}


@pytest.fixture(scope="module", params=list(NEW_ARCHS))
def new_arch_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[str, Path]:
    # Named after the architecture: a "phi3" name is what llama.cpp takes for Phi-3's own
    # vocabulary (gguf_writer._loadable_name).
    return request.param, NEW_ARCHS[request.param](
        tmp_path_factory.mktemp(request.param) / request.param)


@pytest.mark.parametrize("gguf_type", list(TOLERANCE))
def test_gemma_and_phi3_run_in_llama_cpp_like_the_source(
        new_arch_dir: tuple[str, Path], tmp_path: Path, gguf_type: str) -> None:
    """Each quant type of a Gemma / Phi-3 export (byte-level or sentencepiece-style
    vocabulary; a Llama with the latter too) passes the export's own check and runs in
    llama.cpp like the source: same tokens, last-position logits correlated, f16's greedy
    reply equal."""
    pytest.importorskip("llama_cpp")
    import gguf

    name, folder = new_arch_dir
    out = tmp_path / f"{name}-{gguf_type}.gguf"
    res = export_model(ModelSpec(path=str(folder)), gguf=out, gguf_type=gguf_type)
    assert res.check is not None and res.check.tokens_match
    header = read_header(out)
    arch = name.split("-")[0]
    assert header.meta["general.architecture"] == arch
    if name in SPACE_PREFIX:
        assert header.meta["tokenizer.ggml.model"] == "llama"
        assert header.meta["tokenizer.ggml.add_space_prefix"] is SPACE_PREFIX[name]
        assert header.meta["tokenizer.ggml.add_bos_token"] is True
        # every check text in llama.cpp, but the leading-space one for Metaspace's rule
        assert res.check.texts == len(VERIFY_PROMPTS + TOKENIZE_TEXTS) - (
            name == "llama-metaspace")
    else:
        assert header.meta["tokenizer.ggml.model"] == "gpt2"
    names = {t.name for t in gguf.GGUFReader(str(out)).tensors}
    if arch.startswith("gemma"):
        assert header.meta[f"{arch}.attention.key_length"] == 32  # head_dim, not hidden / heads
        assert "output.weight" not in names  # tied: llama.cpp reads token_embd
    if arch == "gemma2":
        assert header.meta["gemma2.attn_logit_softcapping"] == 5.0
        assert header.meta["gemma2.final_logit_softcapping"] == 3.0
        assert header.meta["gemma2.attention.sliding_window"] == 16  # the prompts are longer
        assert {"blk.1.post_attention_norm.weight", "blk.1.post_ffw_norm.weight"} <= names
    if arch == "phi3":
        assert {"blk.0.attn_qkv.weight", "blk.1.ffn_up.weight", "output.weight"} <= names
        assert "blk.0.ffn_gate.weight" not in names  # gate and up stay fused
        assert header.meta["phi3.rope.dimension_count"] == (8 if "partial" in name else 16)
    _assert_llama_cpp_follows_source(folder, out, gguf_type, f16_max_diff=0.05)


def test_gemma_norm_offset_is_what_makes_it_match(tmp_path: Path) -> None:
    """Without Gemma's +1 on the norm weights the file answers differently: the check
    refuses it (the test above would pass for a writer that ignored the offset only if
    the check could not tell)."""
    pytest.importorskip("llama_cpp")
    from unittest import mock

    from slmchat.engine.tools import gguf_writer

    folder = make_tiny_gemma(tmp_path / "gemma")
    with mock.patch.object(gguf_writer, "adjust_tensor", lambda arch, name, data: data), \
            pytest.raises(InvalidParameterError, match="does not match the source model"):
        export_model(ModelSpec(path=str(folder)), gguf=tmp_path / "g.gguf", gguf_type="f16")
    assert not (tmp_path / "g.gguf").exists()


@pytest.mark.parametrize("change, reason", [
    ({"hidden_activation": "relu"}, "activation"),
    ({"tie_word_embeddings": False}, "untied"),
    ({"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}},
     "rope scaling"),
])
def test_gemma_variants_llama_cpp_cannot_run_are_refused(tmp_path: Path, change: dict,
                                                         reason: str) -> None:
    from transformers import GemmaConfig

    from slmchat.engine.model.gguf_layout import check_exportable

    config = GemmaConfig(architectures=["GemmaForCausalLM"], **change)
    with pytest.raises(InvalidParameterError, match=reason):
        check_exportable(config)


def test_phi3_long_context_gemma3_and_uncapped_gemma2_are_refused_with_a_reason() -> None:
    from transformers import Gemma2Config, Gemma3TextConfig, Phi3Config

    from slmchat.engine.model.gguf_layout import check_exportable

    long = Phi3Config(architectures=["Phi3ForCausalLM"], hidden_size=64,
                      num_attention_heads=4, rope_parameters={
                          "rope_type": "longrope", "rope_theta": 10000.0,
                          "short_factor": [1.0] * 8, "long_factor": [2.0] * 8},
                      original_max_position_embeddings=128, max_position_embeddings=512)
    with pytest.raises(InvalidParameterError, match="long-context rope factors"):
        check_exportable(long)
    with pytest.raises(InvalidParameterError, match="Gemma3ForCausalLM"):
        check_exportable(Gemma3TextConfig(architectures=["Gemma3ForCausalLM"]))
    check_exportable(Gemma2Config(architectures=["Gemma2ForCausalLM"]))  # Gemma-2-2B's shape
    with pytest.raises(InvalidParameterError, match="soft-capping"):
        check_exportable(Gemma2Config(architectures=["Gemma2ForCausalLM"],
                                      attn_logit_softcapping=None))
    with pytest.raises(InvalidParameterError, match="query_pre_attn_scalar"):
        check_exportable(Gemma2Config(architectures=["Gemma2ForCausalLM"],
                                      query_pre_attn_scalar=144))


def test_sentencepiece_vocabulary_layout(tmp_path: Path) -> None:
    """A sentencepiece-style tokenizer is written as convert_hf_to_gguf writes one from
    tokenizer.model: token types (BYTE, UNKNOWN, CONTROL, UNUSED padding to the config's
    vocab_size), scores ordered as the merges, bos/eos/unk ids and the chat template."""
    import gguf

    from slmchat.engine.model.gguf_vocab import spm_scores, tokenizer_json

    folder = NEW_ARCHS["phi3-spm"](tmp_path / "phi3")
    out = tmp_path / "phi3.gguf"
    export_model(ModelSpec(path=str(folder)), gguf=out, gguf_type="f16", verify=False)
    src = load(ModelSpec(path=str(folder), device="cpu", dtype="fp32")).tokenizer
    meta = read_header(out).meta
    reader = gguf.GGUFReader(str(out))
    field = reader.get_field("tokenizer.ggml.tokens")
    tokens = [bytes(field.parts[i]).decode() for i in field.data]
    types = list(reader.get_field("tokenizer.ggml.token_type").contents())
    scores = list(reader.get_field("tokenizer.ggml.scores").contents())
    vocab = src.get_vocab()
    assert len(tokens) == len(types) == len(scores) == 512 > len(vocab)
    assert tokens[:len(vocab)] == sorted(vocab, key=vocab.__getitem__)
    assert tokens[len(vocab):] == [f"[PAD{i}]" for i in range(len(vocab), 512)]
    kinds = {i: gguf.TokenType(t) for i, t in enumerate(types)}
    assert kinds[0] == gguf.TokenType.UNKNOWN and tokens[0] == "<unk>"
    assert kinds[1] == kinds[2] == gguf.TokenType.CONTROL  # <s>, </s>
    assert all(kinds[vocab[t]] == gguf.TokenType.CONTROL for t in PHI3_ADDED)
    assert [tokens[i] for i in kinds if kinds[i] == gguf.TokenType.BYTE] == \
        [f"<0x{b:02X}>" for b in range(256)]
    assert all(kinds[i] == gguf.TokenType.UNUSED for i in range(len(vocab), 512))
    merged = spm_scores(tokenizer_json(src)["model"])
    assert merged and all(scores[vocab[t]] == s for t, s in merged.items())
    assert max(s for i, s in enumerate(scores) if tokens[i] not in merged) < min(merged.values())
    assert (meta["tokenizer.ggml.bos_token_id"], meta["tokenizer.ggml.eos_token_id"],
            meta["tokenizer.ggml.unknown_token_id"]) == (1, 2, 0)
    assert meta["tokenizer.ggml.add_eos_token"] is False
    assert meta["tokenizer.chat_template"] == src.chat_template


def test_merge_scores_are_what_makes_llama_cpp_split_like_the_source(tmp_path: Path) -> None:
    """With one score for every token (what gguf's LlamaHfVocab writes, -1000) llama.cpp
    merges left to right and splits the texts differently: the export's check refuses the
    file (so the check could tell a writer that got the scores wrong)."""
    pytest.importorskip("llama_cpp")
    from unittest import mock

    from slmchat.engine.model import gguf_vocab

    folder = NEW_ARCHS["llama-spm"](tmp_path / "llama")
    with mock.patch.object(gguf_vocab, "spm_scores", lambda model: {}), \
            pytest.raises(InvalidParameterError, match="tokenizer_match=False"):
        export_model(ModelSpec(path=str(folder)), gguf=tmp_path / "l.gguf", gguf_type="f16")
    assert not (tmp_path / "l.gguf").exists()


def test_metaspace_leaves_out_only_the_leading_space_llama_cpp_adds(tmp_path: Path) -> None:
    """transformers 5's LlamaTokenizer (Metaspace, prepend "first") puts no "▁" before a
    text that starts with a space; llama.cpp (add_space_prefix, as sentencepiece's
    add_dummy_prefix) does, so the check leaves those texts out for it, and only those:
    Llama 2's own tokenizer.json (Prepend normalizer) splits them as llama.cpp."""
    pytest.importorskip("llama_cpp")
    from slmchat.engine.model.llamacpp import LlamaCppModel, LlamaCppTokenizer

    text = " Paris is the capital of France"
    assert text in TOKENIZE_TEXTS
    for name, same in (("llama-metaspace", False), ("llama-spm", True)):
        folder = NEW_ARCHS[name](tmp_path / name)
        out = tmp_path / f"{name}.gguf"
        export_model(ModelSpec(path=str(folder)), gguf=out, gguf_type="f16")
        src = load(ModelSpec(path=str(folder), device="cpu", dtype="fp32")).tokenizer
        assert (text in check_texts(src)) is same
        want = src(text, add_special_tokens=False)["input_ids"]
        got = LlamaCppTokenizer(LlamaCppModel(out, 256, 1))(text, add_special_tokens=False)
        if same:
            assert got["input_ids"] == want
        else:  # one "▁" more at the start, the rest alike
            assert src.convert_ids_to_tokens(want)[0] == "\u2581Paris"
            assert src.convert_ids_to_tokens(got["input_ids"])[:2] == ["\u2581", "\u2581Paris"]
            assert got["input_ids"][1:] == want


def _tokenizer(model: object, **pipeline: object):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(model)  # type: ignore[arg-type]
    for key, value in pipeline.items():
        setattr(backend, key, value)
    return PreTrainedTokenizerFast(tokenizer_object=backend)


def test_tokenizers_llama_cpp_cannot_take_are_refused_with_a_reason() -> None:
    """WordPiece / Unigram vocabularies, "▁" spaces without byte fallback, a byte-fallback
    vocabulary missing byte tokens, and a pre-tokenizer llama.cpp's SPM tokenizer has no
    counterpart for: each refused in one line before anything is written."""
    from tokenizers import models, normalizers, pre_tokenizers

    from slmchat.engine.model.gguf_vocab import tokenizer_metadata

    spm_vocab = {"<unk>": 0, "\u2581": 1, "a": 2, "\u2581a": 3}
    bytes_vocab = {**spm_vocab, **{f"<0x{b:02X}>": 4 + b for b in range(256)}}
    replace = normalizers.Replace(" ", "\u2581")
    cases = [
        (_tokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]")), "not WordPiece"),
        (_tokenizer(models.Unigram([("<unk>", 0.0), ("a", -1.0)], 0)), "not Unigram"),
        (_tokenizer(models.BPE(spm_vocab, [("\u2581", "a")], unk_token="<unk>"),
                    normalizer=replace), "without <0xNN> byte tokens"),
        (_tokenizer(models.BPE(spm_vocab, [("\u2581", "a")], unk_token="<unk>",
                               byte_fallback=True), normalizer=replace), "lacks 256 byte"),
        (_tokenizer(models.BPE(bytes_vocab, [("\u2581", "a")], unk_token="<unk>",
                               byte_fallback=True), normalizer=replace,
                    pre_tokenizer=pre_tokenizers.Digits(individual_digits=True)),
         "Digits pre-tokenizer is not supported"),
    ]
    config = type("C", (), {"vocab_size": 260})()
    for tok, reason in cases:
        with pytest.raises(InvalidParameterError, match=reason) as err:
            tokenizer_metadata(None, tok, config)
        assert "\n" not in str(err.value)
