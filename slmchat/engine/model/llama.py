"""A lean decode path for Llama-architecture models (the default model among them).

Why: for a 135M model, ``model.generate()`` on the CPU spends much of each token in
Python and module dispatch, not in matmuls (30 layers x ~40 small ops). This runner
keeps the same weights (views, no copies) but runs each layer as a short list of torch
calls: fused QKV and gate/up matmuls, RoPE from a precomputed table, and a preallocated
KV cache written in place. Numerics follow transformers' LlamaForCausalLM op for op
(RMSNorm in fp32, the model's own rotary tables, SDPA), so greedy output in fp32 matches
the reference; ``tests/engine/model/test_llama.py`` checks logits and text against it.

Quantized projections (cpu-int8 dynamic Linear, bitsandbytes) are called as modules,
so the same runner serves those paths, just without the fused matmuls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from slmchat.engine.model.arch import is_plain_llama, rope_theta

_CACHE_CHUNK = 256


def supports(model: Any) -> bool:
    """True for plain (non-PEFT) Llama-architecture causal LMs we can run exactly."""
    if type(model).__name__ != "LlamaForCausalLM":
        return False
    return supports_config(getattr(model, "config", None))


def supports_config(config: Any) -> bool:
    """The config-level conditions (also used by the lite loader on config.json)."""
    return is_plain_llama(config)


def _is_plain_linear(module: Any) -> bool:
    return type(module) is torch.nn.Linear and module.weight.dtype in (
        torch.float32, torch.bfloat16, torch.float16)


def expected_shapes(config: Any) -> dict[str, tuple[int, ...]]:
    h = int(config.hidden_size)
    nh = int(config.num_attention_heads)
    kvh = int(getattr(config, "num_key_value_heads", None) or nh)
    hd = int(getattr(config, "head_dim", None) or h // nh)
    inter = int(config.intermediate_size)
    shapes: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (int(config.vocab_size), h), "model.norm.weight": (h,)}
    for i in range(int(config.num_hidden_layers)):
        p = f"model.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (nh * hd, h), p + "self_attn.k_proj.weight": (kvh * hd, h),
            p + "self_attn.v_proj.weight": (kvh * hd, h), p + "self_attn.o_proj.weight": (h, nh * hd),
            p + "mlp.gate_proj.weight": (inter, h), p + "mlp.up_proj.weight": (inter, h),
            p + "mlp.down_proj.weight": (h, inter),
        })
    return shapes


def _check_shapes(config: Any, tensors: dict[str, torch.Tensor]) -> None:
    expected = expected_shapes(config)
    if not getattr(config, "tie_word_embeddings", False) or "lm_head.weight" in tensors:
        expected["lm_head.weight"] = expected["model.embed_tokens.weight"]
    for name, shape in expected.items():
        if name not in tensors:
            raise ValueError(f"the weights lack {name} that config.json requires")
        if tuple(tensors[name].shape) != shape:
            raise ValueError(f"the weights do not match config.json: {name} is "
                             f"{tuple(tensors[name].shape)}, the config implies {shape}")
    extra = sorted(set(tensors) - set(expected) - {"lm_head.weight"})
    if extra:
        raise ValueError(f"the weights hold tensors config.json does not describe ({extra[0]}, ...)")


def _proj(module: Any) -> Any:
    """A callable x -> module(x), as a bare matmul for plain Linear layers."""
    if _is_plain_linear(module) and module.bias is None:
        weight = module.weight
        return lambda x: F.linear(x, weight)
    return module


def _fuse(modules: list[Any]) -> Any:
    """Concatenate plain Linear weights into one matrix and re-point the modules at
    views of it (so memory is not doubled). Returns a callable x -> x @ W.T."""
    if not all(_is_plain_linear(m) and m.bias is None for m in modules):
        return None
    fused = torch.cat([m.weight.data for m in modules], dim=0).contiguous()
    start = 0
    for m in modules:
        n = m.weight.shape[0]
        m.weight.data = fused[start:start + n]
        start += n
    return fused


@dataclass
class _Layer:
    in_norm: torch.Tensor
    post_norm: torch.Tensor
    qkv: torch.Tensor | None
    q: Any
    k: Any
    v: Any
    o: Any
    gate_up: torch.Tensor | None
    gate: Any
    up: Any
    down: Any


class FastCache:
    """Preallocated K/V for all layers; ``length`` tokens are valid."""

    def __init__(self, n_layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device, capacity: int) -> None:
        shape = (n_layers, kv_heads, capacity, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.length = 0

    @property
    def capacity(self) -> int:
        return self.k.shape[2]

    def reserve(self, needed: int, limit: int) -> None:
        if needed <= self.capacity:
            return
        new = min(max(needed, self.capacity * 2), max(limit, needed))
        new = ((new + _CACHE_CHUNK - 1) // _CACHE_CHUNK) * _CACHE_CHUNK
        for name in ("k", "v"):
            old = getattr(self, name)
            grown = torch.zeros((old.shape[0], old.shape[1], new, old.shape[3]),
                                dtype=old.dtype, device=old.device)
            grown[:, :, : self.length] = old[:, :, : self.length]
            setattr(self, name, grown)

    def crop(self, tokens_to_remove: int) -> None:
        """Same sign convention as transformers 5: a negative count removes tokens."""
        self.length = max(0, self.length + tokens_to_remove) if tokens_to_remove < 0 else \
            min(self.length, tokens_to_remove)

    def get_seq_length(self) -> int:
        return self.length


class FastLlama:
    """Run a Llama forward with minimal per-token overhead.

    Built either from a loaded transformers model (``from_model``: shares its weights)
    or straight from a safetensors state dict (``from_state_dict``: the lite start-up
    path, which never imports transformers).
    """

    def __init__(self, config: Any, embed: torch.Tensor, final_norm: torch.Tensor,
                 lm_head: Any, layers: list[_Layer]) -> None:
        self.config = config
        self.n_heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.n_heads
        self.max_len = int(config.max_position_embeddings)
        self.eps = float(config.rms_norm_eps)
        self.theta = rope_theta(config)
        self.embed_weight = embed
        self.final_norm = final_norm
        self.lm_head = lm_head  # a weight tensor, or a callable (quantized module)
        self.layers = layers
        self.device = embed.device
        self.dtype = embed.dtype
        self._cos = torch.empty(0)
        self._sin = torch.empty(0)

    @classmethod
    def from_model(cls, model: Any) -> FastLlama:
        if not supports(model):
            raise ValueError("fast path supports plain Llama-architecture models only")
        inner = model.model
        layers = []
        for layer in inner.layers:
            att, mlp = layer.self_attn, layer.mlp
            layers.append(_Layer(
                in_norm=layer.input_layernorm.weight, post_norm=layer.post_attention_layernorm.weight,
                qkv=_fuse([att.q_proj, att.k_proj, att.v_proj]),
                q=att.q_proj, k=att.k_proj, v=att.v_proj, o=_proj(att.o_proj),
                gate_up=_fuse([mlp.gate_proj, mlp.up_proj]),
                gate=mlp.gate_proj, up=mlp.up_proj, down=_proj(mlp.down_proj),
            ))
        head = model.lm_head.weight if _is_plain_linear(model.lm_head) else model.lm_head
        return cls(model.config, inner.embed_tokens.weight, inner.norm.weight, head, layers)

    @classmethod
    def from_state_dict(cls, config: Any, tensors: dict[str, torch.Tensor]) -> FastLlama:
        """``tensors`` uses transformers' LlamaForCausalLM names (model.layers.N...).

        Every tensor's shape is checked against the config first, so a config.json that
        does not match its weights is refused (ValueError) instead of running garbage.
        """
        _check_shapes(config, tensors)

        def w(name: str) -> torch.Tensor:
            return tensors[name]

        def lin(weight: torch.Tensor) -> Any:
            return lambda x: F.linear(x, weight)

        layers = []
        for i in range(config.num_hidden_layers):
            p = f"model.layers.{i}."
            # pop: each layer's separate matrices are freed as soon as they are fused, so
            # peak memory stays near one copy of the weights.
            qkv = torch.cat([tensors.pop(p + f"self_attn.{n}_proj.weight") for n in "qkv"])
            gate_up = torch.cat([tensors.pop(p + "mlp.gate_proj.weight"),
                                 tensors.pop(p + "mlp.up_proj.weight")])
            layers.append(_Layer(
                in_norm=w(p + "input_layernorm.weight"), post_norm=w(p + "post_attention_layernorm.weight"),
                qkv=qkv, q=None, k=None, v=None, o=lin(w(p + "self_attn.o_proj.weight")),
                gate_up=gate_up, gate=None, up=None, down=lin(w(p + "mlp.down_proj.weight")),
            ))
        embed = w("model.embed_tokens.weight")
        head = tensors.get("lm_head.weight", embed)
        return cls(config, embed, w("model.norm.weight"), head, layers)

    def _rope(self, end: int) -> None:
        """cos/sin tables for positions [0, n), computed exactly as transformers'
        default rotary embedding does (same ops, same order, fp32 then cast)."""
        if self._cos.shape[0] >= end:
            return
        n = min(max(end, _CACHE_CHUNK, self._cos.shape[0] * 2), max(self.max_len, end))
        dim = self.head_dim
        inv_freq = 1.0 / (self.theta ** (
            torch.arange(0, dim, 2, dtype=torch.int64).to(device=self.device, dtype=torch.float) / dim))
        pos = torch.arange(n, device=self.device)[None]
        freqs = pos[..., None].float() * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        self._cos, self._sin = emb.cos().to(self.dtype)[0], emb.sin().to(self.dtype)[0]

    def parameters(self) -> Any:
        yield self.embed_weight

    def new_cache(self) -> FastCache:
        return FastCache(len(self.layers), self.kv_heads, self.head_dim, self.dtype,
                         self.device, _CACHE_CHUNK)

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * h.to(x.dtype)

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor, cache: FastCache, every: bool = False) -> torch.Tensor:
        """Feed ``ids`` [1, T] after the cached tokens; return logits of the last one [1, V]
        (``every``: of each of them, [T, V], for speculative decoding's verification)."""
        t = ids.shape[1]
        start = cache.length
        end = start + t
        cache.reserve(end, self.max_len)
        self._rope(end)
        cos = self._cos[start:end][None, None]
        sin = self._sin[start:end][None, None]
        half = self.head_dim // 2
        hd, nh, kvh = self.head_dim, self.n_heads, self.kv_heads
        x = F.embedding(ids, self.embed_weight)
        mask = None
        if t > 1 and start > 0:
            q_pos = torch.arange(start, end, device=self.device)[:, None]
            mask = torch.arange(end, device=self.device)[None, :] <= q_pos
        for i, L in enumerate(self.layers):
            h = self._norm(x, L.in_norm)
            if L.qkv is not None:
                qkv = F.linear(h, L.qkv)
                q, k, v = qkv.split((nh * hd, kvh * hd, kvh * hd), dim=-1)
            else:
                q, k, v = L.q(h), L.k(h), L.v(h)
            q = q.view(1, t, nh, hd).transpose(1, 2)
            k = k.view(1, t, kvh, hd).transpose(1, 2)
            v = v.view(1, t, kvh, hd).transpose(1, 2)
            q = q * cos + torch.cat((-q[..., half:], q[..., :half]), dim=-1) * sin
            k = k * cos + torch.cat((-k[..., half:], k[..., :half]), dim=-1) * sin
            cache.k[i, :, start:end] = k[0]
            cache.v[i, :, start:end] = v[0]
            keys = cache.k[i, :, :end][None]
            values = cache.v[i, :, :end][None]
            att = F.scaled_dot_product_attention(
                q, keys, values, attn_mask=mask, is_causal=(t > 1 and start == 0),
                enable_gqa=kvh != nh,
            )
            att = att.transpose(1, 2).reshape(1, t, nh * hd)
            x = x + L.o(att)
            h = self._norm(x, L.post_norm)
            if L.gate_up is not None:
                gate, up = F.linear(h, L.gate_up).chunk(2, dim=-1)
            else:
                gate, up = L.gate(h), L.up(h)
            x = x + L.down(F.silu(gate) * up)
        cache.length = end
        last = self._norm(x if every else x[:, -1:], self.final_norm)
        head = self.lm_head
        logits = F.linear(last, head) if isinstance(head, torch.Tensor) else head(last)
        return logits[0] if every else logits[:, -1, :]
