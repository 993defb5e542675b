"""The prompt inspector's facts: tokens per message, token texts, special tokens, and the
KV-cache prefix the next reply would reuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmchat.engine.generation.prompting import ChatMessage, build_prompt, shared_prefix
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model.loader import load
from slmchat.engine.model.spec import ModelSpec
from slmchat.engine.session import Engine
from tests.tinymodels import build_tokenizer

CHAT = [ChatMessage("system", "Be brief."), ChatMessage("user", "Where is Paris?"),
        ChatMessage("assistant", "Paris is in France."), ChatMessage("user", "And Berlin?")]


@pytest.fixture(scope="module")
def chatml():
    return build_tokenizer(chat_template=True)


def test_detail_counts_each_message_with_its_template_wrapping(chatml) -> None:
    plain = build_prompt(chatml, CHAT, 256, 32)
    prompt = build_prompt(chatml, CHAT, 256, 32, detail=True)
    assert prompt.input_ids == plain.input_ids and prompt.text == plain.text
    assert plain.message_tokens == () and plain.kept == tuple(CHAT)
    assert len(prompt.message_tokens) == 4 and all(n > 0 for n in prompt.message_tokens)
    # Each message's share includes <|im_start|>role ... <|im_end|>, so the shares and the
    # generation prompt add up to the whole prompt (a token may merge across a boundary).
    total = sum(prompt.message_tokens) + prompt.generation_prompt_tokens
    assert abs(total - prompt.prompt_tokens) <= len(CHAT)
    alone = len(chatml("<|im_start|>system\nBe brief.<|im_end|>\n",
                       add_special_tokens=False)["input_ids"])
    assert prompt.message_tokens[0] == alone
    assert prompt.generation_prompt_tokens == len(
        chatml("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"])
    # Token texts put back together are the text the model was fed.
    assert "".join(prompt.pieces) == prompt.text
    assert len(prompt.pieces) == prompt.prompt_tokens
    assert set(prompt.special_tokens) == {"<|im_start|>", "<|im_end|>"}


def test_detail_after_dropping_turns_counts_what_was_kept(chatml) -> None:
    long = [ChatMessage("system", "Be brief.")]
    for i in range(30):
        long += [ChatMessage("user", f"question {i} about foxes"),
                 ChatMessage("assistant", f"answer {i} about models")]
    long.append(ChatMessage("user", "last"))
    prompt = build_prompt(chatml, long, 256, 64, detail=True)
    assert prompt.dropped_messages > 0
    assert len(prompt.kept) == len(long) - prompt.dropped_messages
    assert prompt.kept[0].role == "system" and prompt.kept[-1].content == "last"
    assert len(prompt.message_tokens) == len(prompt.kept)


def test_transcript_and_raw_detail() -> None:
    tok = build_tokenizer(chat_template=False)
    prompt = build_prompt(tok, CHAT[1:], 256, 32, detail=True)
    assert prompt.format == "transcript"
    assert prompt.generation_prompt_tokens > 0  # "\nAssistant:"
    assert len(prompt.message_tokens) == 3
    raw = build_prompt(tok, [ChatMessage("user", "The quick brown fox")], 256, 32,
                       mode="raw", detail=True)
    assert raw.message_tokens == (raw.prompt_tokens,)


def test_a_template_that_refuses_partial_conversations_falls_back(chatml) -> None:
    import copy

    strict = copy.deepcopy(chatml)
    strict.chat_template = (
        "{% if messages[-1]['role'] != 'user' %}{{ raise_exception('end on user') }}{% endif %}"
        + chatml.chat_template)
    prompt = build_prompt(strict, CHAT, 256, 32, detail=True)
    assert len(prompt.message_tokens) == 4  # each message's own text, counted alone


def test_shared_prefix() -> None:
    assert shared_prefix([], [1, 2, 3]) == 0
    assert shared_prefix([1, 2, 9], [1, 2, 3, 4]) == 2
    assert shared_prefix([1, 2, 3], [1, 2, 3]) == 2  # one token is always fed


def test_engine_preview_reports_the_reused_kv_prefix(tiny_llama_dir: Path) -> None:
    engine = Engine(load(ModelSpec(path=str(tiny_llama_dir), device="cpu")))
    params = SamplingParams(temperature=0.0, max_new_tokens=6)
    first = [ChatMessage("user", "Where is Paris?")]
    assert engine.preview_prompt(first, params).cached_tokens == 0
    chunks = list(engine.stream_chat(first, params))
    reply = "".join(c.text for c in chunks)
    follow = [*first, ChatMessage("assistant", reply), ChatMessage("user", "And Berlin?")]
    preview = engine.preview_prompt(follow, params, detail=True)
    assert preview.cached_tokens > 0
    actual = list(engine.stream_chat(follow, params))[-1]
    assert actual.cached_tokens == preview.cached_tokens
