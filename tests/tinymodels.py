"""Tiny random models built from configs, with a tokenizer trained locally (no downloads)."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path
from typing import Any

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = (
    "The quick brown fox jumps over the lazy dog. Small language models run on laptops. "
    "Paris is the capital of France. Berlin is the capital of Germany. "
    "def add(a, b):\n    return a + b\n"
    "Local models keep private text on the machine. Fine-tuning adapts a model to a domain. "
) * 20


def build_tokenizer(chat_template: bool = True, vocab_size: int = 300) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator([CORPUS], trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>" if chat_template else "<|endoftext|>",
        bos_token="<|endoftext|>", pad_token="<|endoftext|>",
    )
    if chat_template:
        fast.chat_template = CHATML_TEMPLATE
    return fast


def make_tiny_llama(folder: Path, seed: int = 0, chat_template: bool = True,
                    context: int = 256, tokenizer: Any = None) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tokenizer if tokenizer is not None else build_tokenizer(chat_template=chat_template)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def make_tiny_qwen2(folder: Path, seed: int = 0, tied: bool = False, vocab_pad: int = 0) -> Path:
    """A tiny Qwen2 (attention biases, untied head unless ``tied``) with the ChatML
    tokenizer; the biases are made non-zero so that an export which dropped them would
    show. ``vocab_pad`` rows past the tokenizer's ids, as Qwen2.5's 151,936-row embedding
    over its 151,665 tokens, rope base and norm epsilon as Qwen2.5's."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = build_tokenizer()
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tok) + vocab_pad, hidden_size=64, intermediate_size=128,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=256, rope_theta=1000000.0, rms_norm_eps=1e-6,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, tie_word_embeddings=tied,
    )
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(".bias"):
                param.normal_(0, 0.5)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def _randomize_norms(model) -> None:
    """Norm weights away from their init (Gemma's are 0, meaning a scale of 1), so that an
    export that gets their convention wrong shows in the logits."""
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.normal_(0, 0.3)


def make_tiny_gemma(folder: Path, seed: int = 0, tokenizer: Any = None) -> Path:
    """A tiny Gemma (1): RMSNorm scaling by 1 + w, embeddings scaled by sqrt(hidden), GELU,
    the head tied to the embeddings, and head_dim x heads != hidden (as Gemma-7B)."""
    import torch
    from transformers import GemmaConfig, GemmaForCausalLM

    tok = tokenizer if tokenizer is not None else build_tokenizer()
    torch.manual_seed(seed)
    config = GemmaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=256,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, tie_word_embeddings=True,
    )
    model = GemmaForCausalLM(config)
    _randomize_norms(model)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def make_tiny_gemma2(folder: Path, seed: int = 0, tokenizer: Any = None) -> Path:
    """A tiny Gemma 2: Gemma's conventions plus norms after attention and after the MLP,
    logit soft-capping (low caps, so that they bite on random weights) and sliding
    windows on every other layer."""
    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM

    tok = tokenizer if tokenizer is not None else build_tokenizer()
    torch.manual_seed(seed)
    config = Gemma2Config(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, query_pre_attn_scalar=32,
        max_position_embeddings=256, sliding_window=16, attn_logit_softcapping=5.0,
        final_logit_softcapping=3.0, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True, attn_implementation="eager",
    )
    model = Gemma2ForCausalLM(config)
    _randomize_norms(model)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def make_tiny_phi3(folder: Path, seed: int = 0, partial_rotary: float = 1.0,
                   tokenizer: Any = None, vocab_size: int | None = None) -> Path:
    """A tiny Phi-3: fused qkv_proj and gate_up_proj, untied head; ``partial_rotary`` < 1
    rotates only part of each head (Phi-4-mini's 0.75)."""
    import torch
    from transformers import Phi3Config, Phi3ForCausalLM

    tok = tokenizer if tokenizer is not None else build_tokenizer()
    torch.manual_seed(seed)
    config = Phi3Config(
        vocab_size=vocab_size or len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        original_max_position_embeddings=256, partial_rotary_factor=partial_rotary,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, tie_word_embeddings=False, sliding_window=None,
    )
    model = Phi3ForCausalLM(config)
    _randomize_norms(model)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def make_tiny_gpt2(folder: Path, seed: int = 0) -> Path:
    """A distilgpt2-shaped (but tiny) GPT-2 with no chat template."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = build_tokenizer(chat_template=False)
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tok), n_embd=64, n_layer=2, n_head=4, n_positions=256,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )
    model = GPT2LMHeadModel(config)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def make_scripted_llama(folder: Path, after: str, reply: str, seed: int = 0,
                        chat_template: str | None = None, words: tuple[str, ...] = ()) -> Path:
    """A tiny Llama (without a chat template unless one is given) whose greedy reply is
    ``reply``.

    Each token's output depends only on the token itself (attention and MLP outputs are
    zeroed, so the residual stream is the token's embedding) and ``lm_head`` maps it to
    its successor: ``after`` (an added token, the end of the prompt) -> the tokens of
    ``reply`` in turn -> end of text. The tokens must all differ (checked). ``words``:
    more added (not special) tokens, such as ``<think>``.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tokenizer(chat_template=False)
    tok.add_tokens([after, *words])
    if chat_template is not None:
        tok.chat_template = chat_template
    chain = [tok.convert_tokens_to_ids(after), *tok(reply)["input_ids"], tok.eos_token_id]
    if len(set(chain)) != len(chain):
        raise ValueError(f"reply tokens repeat: {tok.convert_ids_to_tokens(chain)}")
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb = model.model.embed_tokens.weight
        head = model.lm_head.weight
        head.zero_()
        for a, b in pairwise(chain):
            head[b] += 20 * emb[a] / emb[a].norm()
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


# The thinking switch as Qwen3's chat template has it (enable_thinking false: an empty
# reasoning block is written into the prompt), on a short template whose generation
# prompt ends with one token, <|assistant|>, so a scripted model can answer from it.
THINKING_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- set content = message['content'] %}"
    "{%- if '</think>' in content %}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') %}"
    "{%- endif %}"
    "{{- '<|assistant|>' + content + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|' + message['role'] + '|>' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|assistant|>' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)
THINKING_REPLY = "<think>Paris fox</think>Berlin dog"


def make_thinking_llama(folder: Path, reply: str = THINKING_REPLY) -> Path:
    """A tiny scripted Llama whose template has the thinking switch and whose greedy
    reply (with thinking on) is ``reply``: reasoning in <think> markers, then the answer."""
    return make_scripted_llama(folder, "<|assistant|>", reply, chat_template=THINKING_TEMPLATE,
                               words=("<think>", "</think>"))


# Sentencepiece-style tokenizers (spaces as U+2581, <0xNN> byte fallback) as transformers
# holds Llama 2's, Mistral's, Phi-3's and Gemma's. The accents are in the vocabulary,
# emoji and CJK are not (they fall back to bytes).
SPM_CORPUS = CORPUS + "Un café crème à Paris. Naïve résumé, déjà vu.\n" * 10
SPM_STYLES = {
    # Llama 2's / Phi-3's tokenizer.json: Prepend("▁") + Replace(" ", "▁") normalizer.
    "llama": ("<unk>", "<s>", "</s>"),
    # transformers 5's own LlamaTokenizer: a Metaspace pre-tokenizer (prepend "first").
    "metaspace": ("<unk>", "<s>", "</s>"),
    # Gemma's: Replace(" ", "▁") and no prefix; its specials in its order.
    "gemma": ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>"),
}
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<start_of_turn>' + message['role'] + '\n' + message['content'] + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
PHI3_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def build_spm_tokenizer(style: str = "llama", vocab_size: int = 400,
                        added: tuple[str, ...] = ()) -> Any:
    """A sentencepiece-style BPE tokenizer laid out as transformers converts a sentencepiece
    model: the special tokens, the 256 ``<0xNN>`` byte tokens, the merged pieces in the
    order they were learnt (words start with "▁", as sentencepiece's do), the single
    characters, then ``added`` special tokens (Phi-3's, Gemma's turn markers); its
    merges are every split of each piece in the order of the pieces (transformers'
    ``generate_merges``), as in the tokenizer.json of such a model. ``style`` is one of
    SPM_STYLES."""
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast
    from transformers.tokenization_utils_base import generate_merges

    specials = SPM_STYLES[style]
    learner = Tokenizer(models.BPE())
    learner.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always", split=True)
    learner.train_from_iterator([SPM_CORPUS], trainer=trainers.BpeTrainer(
        vocab_size=vocab_size, show_progress=False))
    learnt = json.loads(learner.to_str())["model"]
    # Llama 2's vocabulary has no "\n" in any piece (a newline is <0x0A>), Gemma's has.
    chars = sorted(t for t in learnt["vocab"] if len(t) == 1 and (style == "gemma" or t != "\n"))
    pieces = list(specials) + [f"<0x{b:02X}>" for b in range(256)]
    pieces += [left + right for left, right in learnt["merges"]
               if set(left + right) <= set(chars)]
    pieces += chars
    pieces += [t for t in added if t not in pieces]
    vocab: dict[str, int] = {}
    for piece in pieces:
        vocab.setdefault(piece, len(vocab))
    merges = generate_merges(vocab, skip_tokens=[*specials, *added])
    unk = "<unk>"
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True,
                               byte_fallback=True))
    steps = [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    if style == "llama":
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"),
                                               normalizers.Replace(" ", "\u2581")])
        steps.append(decoders.Strip(" ", 1, 0))
    elif style == "metaspace":
        tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first", split=False)
        steps.append(decoders.Strip(" ", 1, 0))
    else:
        tok.normalizer = normalizers.Replace(" ", "\u2581")
        tok.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")
    tok.decoder = decoders.Sequence(steps)
    # Phi-3-mini's chat markers and </s> swallow the whitespace after them (rstrip), as
    # llama.cpp assumes of a model named "phi3"; <|endoftext|> does not.
    rstrip = {*added, "</s>"} - {"<|endoftext|>"} if added and style != "gemma" else set()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False, rstrip=t in rstrip)
                            for t in (*specials, *added)])
    bos = "<bos>" if style == "gemma" else "<s>"
    eos = "<eos>" if style == "gemma" else "</s>"
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos,
                                   unk_token=unk, pad_token="<pad>" if style == "gemma" else None)
    fast.chat_template = GEMMA_TEMPLATE if style == "gemma" else PHI3_TEMPLATE
    return fast
