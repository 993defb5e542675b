"""GGUF export beyond plain Llama: Qwen2 (attention biases, NEOX rotary, untied head).
Each output loads back (transformers, and llama.cpp where it is installed) and follows the
source model within the quant's tolerance."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from slmchat.engine.model.gguf_header import read_header
from slmchat.engine.model.loader import load
from slmchat.engine.model.spec import ModelSpec
from slmchat.engine.tools.export import export_model
from slmchat.engine.tools.gguf_writer import VERIFY_PROMPTS
from slmchat.errors import InvalidParameterError
from tests.tinymodels import make_tiny_qwen2

# llama.cpp against the source model, per type: least Pearson correlation of the last
# position's logits, and greedy continuation tokens that must be the source's. Only f16
# keeps a random tiny model's near-tied logits in order (q8_0 flips one at token 3).
TOLERANCE = {"f16": (0.999, 12), "q8_0": (0.99, 0), "q6_k": (0.95, 0), "q5_k_m": (0.95, 0),
             "q4_k_m": (0.9, 0)}
GREEDY_TOKENS = 12


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
    import numpy as np

    from slmchat.engine.model.llamacpp import LlamaCppModel, LlamaCppTokenizer

    out = tmp_path / f"qwen2-{gguf_type}.gguf"
    export_model(ModelSpec(path=str(tiny_qwen2_dir)), gguf=out, gguf_type=gguf_type)
    src = load(ModelSpec(path=str(tiny_qwen2_dir), device="cpu", dtype="fp32"))
    model = LlamaCppModel(out, 256, 1)
    tok = LlamaCppTokenizer(model)
    min_corr, greedy = TOLERANCE[gguf_type]
    for prompt in VERIFY_PROMPTS:
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        assert ids == src.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        got = _llama_cpp_logits(model, ids)
        with torch.inference_mode():
            want = src.model(input_ids=torch.tensor([ids])).logits[0, -1].numpy()
        assert np.corrcoef(want, got)[0, 1] > min_corr
        if greedy:
            with torch.inference_mode():
                ref = src.model.generate(torch.tensor([ids]), max_new_tokens=greedy,
                                         do_sample=False, eos_token_id=None)[0, len(ids):]
            assert _greedy_llama_cpp(model, ids, greedy) == ref.tolist()


def _lora(base_dir: Path, out: Path) -> Path:
    """A LoRA on every projection (q and k included: their rows are permuted for Llama)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(str(base_dir))
    config = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    get_peft_model(base, config).save_pretrained(str(out))
    return out


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def lora_case(request: pytest.FixtureRequest, tiny_llama_dir: Path, tiny_qwen2_dir: Path,
              tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    base = tiny_llama_dir if request.param == "llama" else tiny_qwen2_dir
    return request.param, base, _lora(base, tmp_path_factory.mktemp("lora") / "adapter")


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
    assert len(shapes) == 2 * 7 * 2  # 7 projections x 2 layers, a and b each
    # gguf lists dims fastest first: lora_a is (r x in) -> [in, r], lora_b (out x r) -> [r, out]
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
