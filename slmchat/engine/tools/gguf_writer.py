"""Write a Llama, Qwen2, Gemma, Gemma 2 or Phi-3 transformers model as a GGUF file (f16
or q8_0; the K-quants through llama.cpp's quantizer).

Follows llama.cpp's ``convert_hf_to_gguf.py`` (model/gguf_layout.py): ARCH.* hyper-
parameters, ``blk.N.*`` tensor names, Llama's q/k weights permuted from the HF rotary
layout (halves) back to the interleaved layout llama.cpp expects, 1-D tensors (norms,
Qwen2's attention biases) kept in F32, the tokenizer (model/gguf_vocab.py: a "gpt2"
vocabulary with merges for byte-level BPE, a "llama" (SPM) one with scores for the
sentencepiece-style BPE of Llama 2, Gemma and Phi-3), and the chat template. The result is
checked by ``verify_gguf``: transformers loads it back (undoing the permutation) and its
logits and tokenization are compared with the source model's. Gemma, Gemma 2 and Phi-3
files, and every file with a "llama" vocabulary, are checked in llama.cpp itself
(transformers cannot read a Gemma 1 GGUF, nor a Phi-3's partial rotary from one, and the
SPM vocabulary is split by llama.cpp's own algorithm): the same comparison, on the logits
llama.cpp computes from the file, and llama.cpp's tokens for the prompts and for
TOKENIZE_TEXTS (spaces, newlines, accents, emoji, rare words).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmchat.engine.model.gguf_layout import (
    adjust_tensor,
    gguf_arch,
    permute,
    skip_tensor,
    tensor_name,
    write_llama_header,
)
from slmchat.engine.model.gguf_vocab import prefix_rule, tokenizer_json, vocab_kind
from slmchat.errors import InvalidParameterError

# f16 and q8_0 are written here; the K-quants by llama.cpp's quantizer from an f16 file
# (model/gguf_copy.requantize), as `llama-quantize` makes them.
WRITTEN_TYPES = ("f16", "q8_0")
QUANTIZED_TYPES = ("q6_k", "q5_k_m", "q4_k_m")
GGUF_TYPES = WRITTEN_TYPES + QUANTIZED_TYPES
# Least share of positions whose top token matches the source model, per type (verify_gguf).
MIN_TOP1 = {"f16": 0.98, "q8_0": 0.9, "q6_k": 0.85, "q5_k_m": 0.8, "q4_k_m": 0.7}
VERIFY_PROMPTS = (
    "The capital of France is",
    "def add(a, b):\n    return",
    "Small language models run on laptops because",
)
# Texts the file's tokenizer must split as the source's does, besides the prompts: a
# leading space, runs of spaces, a tab and newlines, accents, emoji / CJK (which fall back
# to <0xNN> bytes in a sentencepiece-style vocabulary), and rare words, split into
# sub-word pieces whose merge order matters. Checked where llama.cpp runs the check
# (check_texts says which are left out for which tokenizers).
TOKENIZE_TEXTS = (
    " Paris is the capital of France",
    "Words it never saw split into pieces: theater, lighthouse, misunderstanding.",
    "two  spaces,\ta tab\nand\n\n  indented lines\n",
    "Un café crème, naïve résumé",
    "emoji \U0001f642 and \u6771\u4eac",
)

# llama.cpp's vocabulary loader (llama-cpp-python 0.3.36) sets attributes on these tokens
# in any model whose general.name contains "phi3" or "phi-3" (meaning Phi-3's
# sentencepiece vocabulary), and fails to load one whose vocabulary lacks them.
_PHI3_NAME_TOKENS = ("</s>", "<unk>", "<s>", "<|endoftext|>")


def _loadable_name(name: str, tokenizer: Any) -> str:
    """``name``, unless llama.cpp would take it for Phi-3's own vocabulary and fail on
    ours: then "phi3"/"phi-3" in it become "phi 3"."""
    import re

    vocab = tokenizer.get_vocab()
    if all(t in vocab for t in _PHI3_NAME_TOKENS):
        return name
    return re.sub(r"(?i)phi-?3", lambda m: m.group(0)[:3] + " 3", name)


def write_gguf(
    model: Any, tokenizer: Any, path: Path, gguf_type: str = "f16", name: str = "model",
    progress: Callable[[float], None] | None = None,
) -> None:
    """Write ``model`` (a float Llama, Qwen2, Gemma, Gemma 2 or Phi-3 model) to ``path``."""
    import gguf
    import numpy as np

    if gguf_type not in GGUF_TYPES:
        raise InvalidParameterError(f"unknown GGUF type {gguf_type!r} (choose from {', '.join(GGUF_TYPES)})")
    if gguf_type in QUANTIZED_TYPES:
        from slmchat.engine.model.gguf_copy import requantize

        full = path.with_name(path.name + ".f16")
        try:
            write_gguf(model, tokenizer, full, "f16", name, progress)
            requantize(full, path, gguf_type.upper())
        finally:
            full.unlink(missing_ok=True)
        return
    config = model.config
    arch, permuted = gguf_arch(config)
    n_head = int(config.num_attention_heads)
    n_kv = int(getattr(config, "num_key_value_heads", None) or n_head)
    n_blocks = int(config.num_hidden_layers)
    writer = gguf.GGUFWriter(str(path), arch)
    ftype = gguf.LlamaFileType.MOSTLY_Q8_0 if gguf_type == "q8_0" else gguf.LlamaFileType.MOSTLY_F16
    write_llama_header(writer, config, tokenizer, int(ftype), _loadable_name(name, tokenizer))
    state = model.state_dict()
    tied = bool(getattr(config, "tie_word_embeddings", False))
    items = list(state.items())
    for idx, (key, value) in enumerate(items):
        out_name = tensor_name(key, arch, n_blocks)
        if out_name is None or (tied and out_name == "output.weight") or skip_tensor(arch, key):
            continue
        data = adjust_tensor(arch, key, value.detach().float().cpu().numpy())
        if permuted and out_name.endswith("attn_q.weight"):
            data = permute(data, n_head)
        elif permuted and out_name.endswith("attn_k.weight"):
            data = permute(data, n_kv)
        if data.ndim == 1:
            writer.add_tensor(out_name, data.astype(np.float32))
        elif gguf_type == "q8_0" and data.shape[-1] % 32 == 0:
            q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(out_name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(out_name, data.astype(np.float16))
        if progress:
            progress((idx + 1) / len(items))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@dataclass(frozen=True)
class GGUFCheck:
    max_abs_diff: float
    top1_agreement: float
    tokens_match: bool
    positions: int
    texts: int = 0  # texts whose tokenization was compared (tokens_match covers them all)

    @property
    def line(self) -> str:
        return (f"gguf check: max|dlogit|={self.max_abs_diff:.4g} "
                f"top1_agree={self.top1_agreement:.3f} tokenizer_match={self.tokens_match} "
                f"texts={self.texts} positions={self.positions}")


# GGUF architectures checked in llama.cpp rather than through transformers' GGUF reader;
# so is every file with a sentencepiece-style ("llama") vocabulary, whose tokenization is
# llama.cpp's own SPM algorithm.
LLAMACPP_CHECKED = ("gemma", "gemma2", "phi3")


def check_texts(tokenizer: Any) -> tuple[str, ...]:
    """VERIFY_PROMPTS and TOKENIZE_TEXTS, less these: for a tokenizer whose
    Metaspace pre-tokenizer puts no "▁" before a text that starts with a space (prefix
    rule "unless-space", transformers 5's LlamaTokenizer), the texts starting with a
    space, where llama.cpp (add_space_prefix, as sentencepiece's add_dummy_prefix) does."""
    texts = VERIFY_PROMPTS + TOKENIZE_TEXTS
    tok_json = tokenizer_json(tokenizer)
    if vocab_kind(tok_json) == "llama" and prefix_rule(tok_json) == "unless-space":
        return tuple(t for t in texts if not t.startswith(" "))
    return texts


def verify_gguf(model: Any, tokenizer: Any, path: Path, min_top1: float = 0.9) -> GGUFCheck:
    """Load ``path`` back (transformers, or llama.cpp for ``LLAMACPP_CHECKED`` and
    sentencepiece-style vocabularies) and compare with ``model`` on a few prompts: every
    position's logits, and the tokenization (of ``check_texts`` too, in llama.cpp)."""
    arch, _ = gguf_arch(model.config)
    if arch in LLAMACPP_CHECKED or vocab_kind(tokenizer_json(tokenizer)) == "llama":
        check = _llamacpp_check(model, tokenizer, path, arch)
    else:
        check = _transformers_check(model, tokenizer, path)
    if not check.tokens_match or check.top1_agreement < min_top1:
        raise InvalidParameterError(f"the written GGUF does not match the source model "
                                    f"({check.line}); nothing was written")
    return check


def _llamacpp_check(model: Any, tokenizer: Any, path: Path, arch: str) -> GGUFCheck:
    """The file's logits as llama.cpp computes them (one context, all positions)."""
    import torch

    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise InvalidParameterError(
            f"checking a {arch} GGUF needs llama.cpp (llama-cpp-python: make llamacpp); "
            "nothing was written") from exc
    import os

    try:
        llm = Llama(model_path=str(path), n_ctx=128, n_threads=os.cpu_count() or 1,
                    n_batch=128, logits_all=True, verbose=False)
    except ValueError as exc:  # llama-cpp-python's "Failed to load model from file"
        raise InvalidParameterError(f"llama.cpp cannot load the written {arch} GGUF; "
                                    "nothing was written") from exc
    worst, agree, total = 0.0, 0, 0
    texts = check_texts(tokenizer)
    try:
        tokens_match = all(
            list(tokenizer(text, add_special_tokens=False)["input_ids"])
            == list(llm.tokenize(text.encode(), add_bos=False, special=False))
            for text in texts)
        with torch.inference_mode():
            for prompt in VERIFY_PROMPTS:
                ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
                a = model(input_ids=torch.tensor([ids])).logits[0].float().numpy()
                llm.reset()
                llm.eval(list(ids))
                b = llm.scores[:len(ids), :a.shape[-1]]
                worst = max(worst, float(abs(a - b).max()))
                agree += int((a.argmax(-1) == b.argmax(-1)).sum())
                total += len(ids)
    finally:
        llm.close()
    return GGUFCheck(worst, agree / max(total, 1), tokens_match, total, len(texts))


def _transformers_check(model: Any, tokenizer: Any, path: Path) -> GGUFCheck:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"gguf_file": path.name, "local_files_only": True,
                              "trust_remote_code": False}
    back = AutoModelForCausalLM.from_pretrained(str(path.parent), dtype=torch.float32,
                                                **kwargs).eval()
    back_tok = AutoTokenizer.from_pretrained(str(path.parent), **kwargs)
    worst, agree, total, tokens_match = 0.0, 0, 0, True
    with torch.inference_mode():
        for prompt in VERIFY_PROMPTS:
            ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
            ids2 = back_tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
            tokens_match = tokens_match and ids.tolist() == ids2.tolist()
            a = model(input_ids=ids).logits.float()
            b = back(input_ids=ids).logits.float()
            worst = max(worst, float((a - b).abs().max()))
            agree += int((a.argmax(-1) == b.argmax(-1)).sum())
            total += ids.shape[1]
    return GGUFCheck(worst, agree / max(total, 1), tokens_match, total, len(VERIFY_PROMPTS))


def write_gguf_lora(model: Any, path: Path, name: str = "adapter") -> int:
    """Write the LoRA adapter of ``model`` (a peft model, not merged) as a GGUF LoRA
    adapter for llama.cpp (``--lora FILE``, Ollama's ADAPTER), the way llama.cpp's
    ``convert_lora_to_gguf.py`` writes one: general.type "adapter", adapter.type "lora",
    adapter.lora.alpha, and ``BASE_TENSOR.lora_a`` (r x in) / ``.lora_b`` (out x r) in F32,
    llama.cpp scaling by alpha / r as peft does. Llama's q/k rows are permuted in the
    base GGUF, so lora_b's rows get the same permutation. Returns the tensor pairs written."""
    import gguf
    import numpy as np
    from peft import get_peft_model_state_dict

    config = model.get_base_model().config
    arch, permuted = gguf_arch(config)
    lora = model.peft_config.get("default")
    if lora is None or getattr(lora, "peft_type", None) is None or str(lora.peft_type) not in (
            "LORA", "PeftType.LORA"):
        raise InvalidParameterError("only a LoRA adapter can be written as a GGUF adapter")
    if getattr(lora, "use_dora", False) or getattr(lora, "use_rslora", False):
        raise InvalidParameterError("llama.cpp's GGUF adapters hold plain LoRA, not DoRA or "
                                    "rsLoRA; merge the adapter instead (--merge-adapter)")
    n_head = int(config.num_attention_heads)
    n_kv = int(getattr(config, "num_key_value_heads", None) or n_head)
    state = get_peft_model_state_dict(model)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(name)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(lora.lora_alpha))
    pairs = 0
    for key in sorted(state):
        if ".lora_A." not in key:
            continue
        stem = key.split(".lora_A.")[0].removeprefix("base_model.model.")
        base = tensor_name(stem + ".weight", arch, int(config.num_hidden_layers))
        if base is None:
            raise InvalidParameterError(f"the adapter trains {stem}, which has no GGUF tensor")
        a = state[key].detach().float().cpu().numpy()
        b = state[key.replace(".lora_A.", ".lora_B.")].detach().float().cpu().numpy()
        if permuted and base.endswith("attn_q.weight"):
            b = permute(b, n_head)
        elif permuted and base.endswith("attn_k.weight"):
            b = permute(b, n_kv)
        writer.add_tensor(base + ".lora_a", np.ascontiguousarray(a, dtype=np.float32))
        writer.add_tensor(base + ".lora_b", np.ascontiguousarray(b, dtype=np.float32))
        pairs += 1
    if not pairs:
        raise InvalidParameterError("the adapter has no LoRA weights to write")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return pairs
