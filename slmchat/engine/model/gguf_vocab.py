"""The tokenizer of a GGUF file, written from a transformers fast tokenizer (its
tokenizer.json) the way llama.cpp's ``convert_hf_to_gguf.py`` writes one:

- byte-level BPE (GPT-2's bytes-as-characters: Qwen2, SmolLM, Llama 3) as a "gpt2"
  vocabulary with its merges (``_set_vocab_gpt2``);
- sentencepiece-style BPE (spaces as U+2581 "▁", ``<0xNN>`` byte fallback: Llama 2,
  Mistral, Gemma, Gemma 2, Phi-3) as a "llama" (SPM) vocabulary (``_set_vocab_sentencepiece``
  / ``_set_vocab_llama_hf``): tokens, scores, token types (NORMAL, CONTROL, USER_DEFINED,
  BYTE for ``<0xNN>``, UNKNOWN, UNUSED padding), bos/eos/unk/pad ids, add_bos/add_eos, and
  add_space_prefix as the tokenizer's normalizer / pre-tokenizer says.

llama.cpp's SPM tokenizer merges, among adjacent pieces, the pair whose joined text is the
vocabulary entry of highest score. The converter takes those scores from tokenizer.model;
without it (``sentencepiece`` is not a dependency) they are read off tokenizer.json's
merges: a token's score is minus the rank of the first merge that makes it. transformers
lists a sentencepiece model's merges in the order of the merged pieces' scores (every
split of a piece, ``generate_merges``), so the order, which is all llama.cpp compares, is
the model's own. gguf's ``LlamaHfVocab`` gives every token -1000 instead, which makes
llama.cpp merge left to right (the tests show the difference).

Other tokenizer kinds (WordPiece, Unigram, BPE without byte fallback but with "▁") are
refused with a one-line InvalidParameterError.
"""

from __future__ import annotations

import json
import re
from typing import Any

from slmchat.errors import InvalidParameterError

SPACE = "\u2581"
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")

# How the tokenizer puts a "▁" before a text (llama.cpp has only "always" and "none"):
# "always" (Prepend normalizer: Llama 2's and Phi-3's tokenizer.json), "none" (Gemma),
# "unless-space" (Metaspace pre-tokenizer, as transformers 5's LlamaTokenizer builds it:
# no "▁" is added to a text that already starts with a space, where llama.cpp adds one).
PREFIX_RULES = ("always", "none", "unless-space")


def tokenizer_json(tokenizer: Any) -> dict[str, Any]:
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    if backend is None:
        raise InvalidParameterError("GGUF export needs a fast (tokenizer.json) tokenizer")
    return dict(json.loads(backend.to_str()))


def _steps(node: dict[str, Any] | None, key: str) -> list[dict[str, Any]]:
    if not node:
        return []
    if node.get("type") == "Sequence":
        return [s for sub in node.get(key, []) for s in _steps(sub, key)]
    return [node]


def vocab_kind(tok_json: dict[str, Any]) -> str:
    """"gpt2" (byte-level BPE) or "llama" (sentencepiece-style BPE); InvalidParameterError
    for the other kinds."""
    model = tok_json.get("model", {})
    if model.get("type") != "BPE":
        raise InvalidParameterError(
            f"GGUF export supports BPE tokenizers (byte-level or sentencepiece-style), "
            f"not {model.get('type')}")
    spm = SPACE in json.dumps([tok_json.get("normalizer"), tok_json.get("pre_tokenizer")],
                              ensure_ascii=False)
    if model.get("byte_fallback"):
        return "llama"
    if spm:
        raise InvalidParameterError(
            "GGUF export supports sentencepiece-style tokenizers with byte fallback only; "
            "this one maps spaces to \u2581 without <0xNN> byte tokens")
    return "gpt2"


def prefix_rule(tok_json: dict[str, Any]) -> str:
    """One of PREFIX_RULES for a sentencepiece-style tokenizer; InvalidParameterError for a
    normalizer / pre-tokenizer llama.cpp's SPM tokenizer does not reproduce."""
    spaces, rule = False, "none"
    for step in _steps(tok_json.get("normalizer"), "normalizers"):
        kind = step.get("type")
        if kind == "Replace" and step.get("pattern", {}).get("String") == " " \
                and step.get("content") == SPACE:
            spaces = True
        elif kind == "Prepend" and step.get("prepend") == SPACE:
            rule = "always"
        else:
            raise InvalidParameterError(f"GGUF export: the sentencepiece-style tokenizer's "
                                        f"{kind} normalizer is not supported")
    for step in _steps(tok_json.get("pre_tokenizer"), "pretokenizers"):
        kind = step.get("type")
        if kind == "Metaspace" and step.get("replacement") == SPACE \
                and step.get("split", True) is False:
            spaces = True
            scheme = step.get("prepend_scheme") or (
                "always" if step.get("add_prefix_space", True) else "never")
            if scheme != "never":
                rule = "unless-space"
        elif kind == "Split" and spaces and step.get("pattern", {}).get("String") == " ":
            pass  # Gemma's: no space is left after the normalizer
        else:
            raise InvalidParameterError(f"GGUF export: the sentencepiece-style tokenizer's "
                                        f"{kind} pre-tokenizer is not supported")
    if not spaces:
        raise InvalidParameterError("GGUF export: the byte-fallback tokenizer does not map "
                                    "spaces to \u2581, so it is not sentencepiece-style")
    return rule


def _merge_pairs(model: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for m in model.get("merges", []):
        left, right = m.split(" ", 1) if isinstance(m, str) else m
        out.append((left, right))
    return out


def spm_scores(model: dict[str, Any]) -> dict[str, float]:
    """Score of each token that a merge makes: minus the rank of its first merge."""
    scores: dict[str, float] = {}
    for rank, (left, right) in enumerate(_merge_pairs(model)):
        scores.setdefault(left + right, float(-rank))
    return scores


def _special_ids(tokenizer: Any) -> dict[str, int]:
    out = {}
    for typ in ("bos", "eos", "unk", "pad"):
        value = getattr(tokenizer, f"{typ}_token_id", None)
        if isinstance(value, int):
            out[typ] = value
    return out


def _adds(tokenizer: Any, ids: dict[str, int]) -> tuple[bool, bool]:
    """Whether the tokenizer puts bos before / eos after a text (what its post-processor
    does, read off its output rather than parsed)."""
    plain = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    full = list(tokenizer("a")["input_ids"])
    extra = len(full) - len(plain)
    add_bos = extra > 0 and "bos" in ids and full[0] == ids["bos"] and full[1:1 + len(plain)] == plain
    add_eos = extra > 0 and "eos" in ids and full[-1] == ids["eos"] and full[-1 - len(plain):-1] == plain
    return add_bos, add_eos


def _table(tokenizer: Any, tok_json: dict[str, Any], config: Any) -> tuple[
        dict[int, str], dict[int, dict[str, Any]], int]:
    vocab = tokenizer.get_vocab()
    size = max(int(config.vocab_size), max(vocab.values()) + 1)
    by_id = {i: t for t, i in vocab.items()}
    added = {a["id"]: a for a in tok_json.get("added_tokens", [])}
    return by_id, added, size


def _write_gpt2(writer: Any, tokenizer: Any, tok_json: dict[str, Any], config: Any) -> None:
    import gguf

    by_id, added, size = _table(tokenizer, tok_json, config)
    tokens: list[str] = []
    types: list[int] = []
    for i in range(size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if added[i].get("special")
                         else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok_json["model"].get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer_name(tok_json, config))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for typ, value in _special_ids(tokenizer).items():
        getattr(writer, f"add_{typ}_token_id")(value)
    writer.add_add_bos_token(False)


def spm_vocab(tokenizer: Any, tok_json: dict[str, Any], config: Any) -> tuple[
        list[str], list[float], list[int]]:
    """Tokens, scores and token types of a sentencepiece-style tokenizer, as
    convert_hf_to_gguf's ``_create_vocab_sentencepiece`` lists them: ids past the
    tokenizer up to the config's vocab_size are "[PADi]" UNUSED, added special tokens
    CONTROL (the unknown token UNKNOWN), other added tokens USER_DEFINED with "▁" written
    as the space llama.cpp matches them on, ``<0xNN>`` BYTE."""
    import gguf

    by_id, added, size = _table(tokenizer, tok_json, config)
    missing = [f"<0x{b:02X}>" for b in range(256) if f"<0x{b:02X}>" not in tokenizer.get_vocab()]
    if missing:  # llama.cpp looks every byte up (and "\n" when it loads the file)
        raise InvalidParameterError(f"GGUF export: the byte-fallback vocabulary lacks "
                                    f"{len(missing)} byte tokens ({missing[0]} ...)")
    merged = spm_scores(tok_json["model"])
    floor = min(merged.values(), default=0.0) - 1.0  # below every merged piece (as the
    # characters in a sentencepiece model), for the tokens no merge makes
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    unk = getattr(tokenizer, "unk_token_id", None)
    tokens: list[str] = []
    scores: list[float] = []
    types: list[int] = []
    for i in range(size):
        text = by_id.get(i)
        if text is None:
            tokens.append(f"[PAD{i}]")
            scores.append(floor)
            types.append(gguf.TokenType.UNUSED)
            continue
        kind = gguf.TokenType.NORMAL
        if i == unk:
            kind = gguf.TokenType.UNKNOWN
        elif i in special or added.get(i, {}).get("special"):
            kind = gguf.TokenType.CONTROL
        elif i in added:
            kind = gguf.TokenType.USER_DEFINED
            text = text.replace(SPACE, " ")
        elif _BYTE_TOKEN.fullmatch(text):
            kind = gguf.TokenType.BYTE
        tokens.append(text)
        scores.append(merged.get(by_id[i], floor) if kind == gguf.TokenType.NORMAL else floor)
        types.append(kind)
    return tokens, scores, types


def _write_spm(writer: Any, tokenizer: Any, tok_json: dict[str, Any], config: Any) -> None:
    rule = prefix_rule(tok_json)
    tokens, scores, types = spm_vocab(tokenizer, tok_json, config)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    ids = _special_ids(tokenizer)
    for typ, value in ids.items():
        getattr(writer, f"add_{typ}_token_id")(value)
    add_bos, add_eos = _adds(tokenizer, ids)
    writer.add_add_bos_token(add_bos)
    writer.add_add_eos_token(add_eos)
    writer.add_add_space_prefix(rule != "none")


def _pre_tokenizer_name(tok_json: dict[str, Any], config: Any) -> str:
    """llama.cpp's pre-tokenizer label (it picks one by hashing; we read the structure)."""
    name = str(getattr(config, "_name_or_path", "") or getattr(config, "name_or_path", ""))
    pre = tok_json.get("pre_tokenizer") or {}
    inner = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    if "smollm" in name.lower() or any(
        p.get("type") == "Digits" and p.get("individual_digits") for p in inner
    ):
        return "smollm"
    if getattr(config, "model_type", None) == "qwen2" and any(
            p.get("type") == "Split" for p in inner):
        return "qwen2"  # Qwen's own split regex (llama.cpp's LLAMA_VOCAB_PRE_TYPE_QWEN2)
    if any(p.get("type") == "ByteLevel" for p in inner):
        return "gpt-2"
    return "default"


def tokenizer_metadata(writer: Any, tokenizer: Any, config: Any) -> None:
    """The tokenizer.ggml.* keys and the chat template for ``tokenizer``."""
    tok_json = tokenizer_json(tokenizer)
    if vocab_kind(tok_json) == "llama":
        _write_spm(writer, tokenizer, tok_json, config)
    else:
        _write_gpt2(writer, tokenizer, tok_json, config)
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str) and template:
        writer.add_chat_template(template)
