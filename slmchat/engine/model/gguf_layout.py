"""How a checkpoint is laid out in a GGUF file, as llama.cpp's ``convert_hf_to_gguf.py``
writes ``LlamaForCausalLM``, ``Qwen2ForCausalLM``, ``GemmaForCausalLM``,
``Gemma2ForCausalLM`` (its soft-caps and sliding window too) and ``Phi3ForCausalLM``:
ARCH.* hyper-parameters, ``blk.N.*`` tensor names (the gguf package's own name map for the
others, Qwen2's biases and Phi-3's fused ``attn_qkv`` / ``ffn_up`` (gate and up in one)
included), Llama's q/k weights permuted from the HF rotary layout (halves) back to the
interleaved layout llama.cpp expects (the others' are not: llama.cpp runs them with NEOX
rotary), Gemma's RMSNorm weights stored as 1 + w (llama.cpp multiplies by the weight,
Gemma by 1 + weight) and its head tied to the embeddings, and the tokenizer with its chat
template (model/gguf_vocab.py: byte-level BPE as a "gpt2" vocabulary with merges,
sentencepiece-style BPE as a "llama" one with scores). Shared by the in-memory exporter
(tools/gguf_writer.py) and the streaming GGUF copy of a checkpoint folder
(model/gguf_copy.py, Llama and Qwen2).
"""

from __future__ import annotations

from typing import Any

from slmchat.engine.model.arch import plain_llama_problem, rope_theta
from slmchat.engine.model.gguf_vocab import tokenizer_metadata
from slmchat.errors import InvalidParameterError

_LAYER_MAP = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def permute(w: Any, n_head: int) -> Any:
    """HF rotary layout -> llama.cpp's (same as convert_hf_to_gguf.LlamaModel.permute)."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


# transformers architecture -> (GGUF architecture, q/k permuted as convert_hf_to_gguf's
# LlamaModel does). Gemma 3 (q/k norms, local rope base, vision) and Phi-3's
# long-context rope factors are not written (check_exportable says so).
EXPORT_ARCHS = {"LlamaForCausalLM": ("llama", True), "Qwen2ForCausalLM": ("qwen2", False),
                "GemmaForCausalLM": ("gemma", False), "Gemma2ForCausalLM": ("gemma2", False),
                "Phi3ForCausalLM": ("phi3", False)}
# model_type each architecture must have (a config naming the class but another type is
# not trusted to have its layout).
_MODEL_TYPES = {"Qwen2ForCausalLM": "qwen2", "GemmaForCausalLM": "gemma",
                "Gemma2ForCausalLM": "gemma2", "Phi3ForCausalLM": "phi3"}


def gguf_arch(config: Any) -> tuple[str, bool]:
    """(GGUF architecture, permute q/k) for an exportable config; InvalidParameterError
    with the reason otherwise."""
    check_exportable(config)
    arch = (getattr(config, "architectures", None) or ["LlamaForCausalLM"])[0]
    return EXPORT_ARCHS.get(arch, EXPORT_ARCHS["LlamaForCausalLM"])


def tensor_name(hf_name: str, arch: str = "llama", n_blocks: int = 0) -> str | None:
    """GGUF name for a state-dict key (None: not written, e.g. rotary buffers)."""
    if arch != "llama":
        import gguf

        kind = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch]
        mapped = gguf.get_tensor_name_map(kind, n_blocks).get_name(
            hf_name, try_suffixes=(".weight", ".bias"))
        return str(mapped) if mapped else None
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.norm.weight":
        return "output_norm.weight"
    if hf_name == "lm_head.weight":
        return "output.weight"
    parts = hf_name.split(".")
    if len(parts) > 3 and parts[:2] == ["model", "layers"]:
        sub = _LAYER_MAP.get(".".join(parts[3:]))
        if sub:
            return f"blk.{parts[2]}.{sub}"
    return None


def _rope_problem(config: Any) -> str | None:
    for key in ("rope_scaling", "rope_parameters"):
        rope = getattr(config, key, None) or {}
        kind = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else None
        if kind not in ("default", None):
            return f"rope scaling {kind!r} is not supported"
    return None


def _qwen2_problem(config: Any) -> str | None:
    if getattr(config, "use_sliding_window", False):
        return "sliding-window attention is not supported"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"activation {config.hidden_act!r} is not supported"
    return _rope_problem(config)


def _gemma_problem(config: Any) -> str | None:
    # llama.cpp's Gemma graph: tanh-approximated GELU, the head tied to the embeddings.
    act = getattr(config, "hidden_activation", None) or getattr(config, "hidden_act", None)
    if act != "gelu_pytorch_tanh":
        return f"Gemma activation {act!r} is not supported (llama.cpp computes gelu_pytorch_tanh)"
    if not getattr(config, "tie_word_embeddings", True):
        return "Gemma with an untied output head is not supported"
    if getattr(config, "attention_bias", False):
        return "Gemma with attention biases is not supported"
    return _rope_problem(config)


def _gemma2_problem(config: Any) -> str | None:
    """What llama.cpp's Gemma 2 graph fixes: soft-capping always on (so both caps must be
    set), sliding windows on every other layer starting with the first, and the query
    scaled by 1/sqrt(head_dim) (by 1/sqrt(hidden / heads) for the 46-layer 27B only)."""
    problem = _gemma_problem(config)
    if problem:
        return problem
    if config.attn_logit_softcapping is None or config.final_logit_softcapping is None:
        return "Gemma 2 without logit soft-capping is not supported (llama.cpp always caps)"
    n_head = int(config.num_attention_heads)
    scalar = float(getattr(config, "query_pre_attn_scalar", None) or config.head_dim)
    want = (config.hidden_size / n_head if int(config.num_hidden_layers) == 46
            else float(config.head_dim))
    if scalar != want:
        return f"Gemma 2 query_pre_attn_scalar {scalar:g} is not supported (llama.cpp uses {want:g})"
    types = list(getattr(config, "layer_types", None) or [])
    pattern = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(len(types))]
    if types and types != pattern:
        return "Gemma 2 with another sliding/full layer pattern is not supported"
    return None


def _phi3_problem(config: Any) -> str | None:
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"activation {config.hidden_act!r} is not supported"
    rope = _rope_problem(config)
    if rope:  # Phi-3 128k's longrope needs rope-factor tensors: not written yet
        return rope + " (Phi-3's long-context rope factors are not written)"
    n_head = int(config.num_attention_heads)
    if int(getattr(config, "head_dim", None) or config.hidden_size // n_head) * n_head != \
            int(config.hidden_size):
        return "Phi-3 with head_dim x heads != hidden_size is not supported"
    return None


def export_problem(config: Any) -> str | None:
    """None when ``config`` (a transformers config or a config.json namespace) has a layout
    written here; otherwise why not, in one line."""
    arch = (getattr(config, "architectures", None) or [""])[0]
    if arch in _MODEL_TYPES and getattr(config, "model_type", None) == _MODEL_TYPES[arch]:
        return {"Qwen2ForCausalLM": _qwen2_problem, "GemmaForCausalLM": _gemma_problem,
                "Gemma2ForCausalLM": _gemma2_problem,
                "Phi3ForCausalLM": _phi3_problem}[arch](config)
    return plain_llama_problem(config)


def check_exportable(config: Any) -> None:
    problem = export_problem(config)
    if problem:
        raise InvalidParameterError("GGUF export supports plain Llama, Qwen2, Gemma, Gemma 2 "
                                    f"and Phi-3 models; {problem}")


def rope_dims(config: Any) -> int:
    """Rotary dimensions per head (Phi-3/4's partial_rotary_factor rotates only a part)."""
    n_head = int(config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // n_head)
    params = getattr(config, "rope_parameters", None) or {}
    factor = float((params.get("partial_rotary_factor") if isinstance(params, dict) else None)
                   or getattr(config, "partial_rotary_factor", None) or 1.0)
    if factor == 1.0:
        return head_dim
    return int(factor * int(config.hidden_size)) // n_head  # as convert_hf_to_gguf's Phi3


def adjust_tensor(arch: str, hf_name: str, data: Any) -> Any:
    """A tensor's values as llama.cpp wants them, beyond the Llama q/k permutation: Gemma
    scales by (1 + w) in its RMSNorm, llama.cpp by w (convert_hf_to_gguf adds 1)."""
    if arch in ("gemma", "gemma2") and hf_name.endswith("norm.weight"):
        return data + 1
    return data


def skip_tensor(arch: str, hf_name: str) -> bool:
    """Gemma's head is its embedding matrix in llama.cpp; a lm_head copy is not written."""
    return arch in ("gemma", "gemma2") and hf_name == "lm_head.weight"


def write_llama_header(writer: Any, config: Any, tokenizer: Any, file_type: int, name: str) -> None:
    """Name, hyper-parameters, file type and tokenizer of a Llama, Qwen2, Gemma or Phi-3
    model: the keys convert_hf_to_gguf's TextModel (and GemmaModel / Phi3MiniModel)
    writes, under the writer's architecture."""
    import gguf

    n_head = int(config.num_attention_heads)
    n_kv = int(getattr(config, "num_key_value_heads", None) or n_head)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // n_head)
    writer.add_name(name)
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(int(config.num_hidden_layers))
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_freq_base(rope_theta(config))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(int(config.vocab_size))
    writer.add_rope_dimension_count(rope_dims(config))
    arch = getattr(writer, "arch", "llama")
    if head_dim != config.hidden_size // n_head or arch in ("gemma", "gemma2"):
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    if arch == "gemma2":
        writer.add_attn_logit_softcapping(float(config.attn_logit_softcapping))
        writer.add_final_logit_softcapping(float(config.final_logit_softcapping))
        writer.add_sliding_window(int(config.sliding_window))
    if arch == "phi3":
        params = getattr(config, "rope_parameters", None) or {}
        orig = ((params.get("original_max_position_embeddings") if isinstance(params, dict)
                 else None) or getattr(config, "original_max_position_embeddings", None))
        if orig:
            writer.add_rope_scaling_orig_ctx_len(int(orig))
        # 0 tells llama.cpp a Phi-3 without sliding windows (Phi-4); it runs Phi-3's
        # windowed ones with full attention (llama.cpp#13676), as transformers does for
        # prompts shorter than the window.
        writer.add_sliding_window(int(getattr(config, "sliding_window", None) or 0))
    writer.add_file_type(int(file_type))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    tokenizer_metadata(writer, tokenizer, config)
