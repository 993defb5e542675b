"""The text layer of the decode loop: incremental detokenizing and stop strings."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from slmchat.engine.generation.decode import stream_generate
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.generation.textstream import IncrementalDetokenizer, StopFilter
from slmchat.engine.model.loader import load
from slmchat.engine.model.spec import ModelSpec


class CountingTokenizer:
    """Wraps a tokenizer and records how many ids each decode() call was given."""

    def __init__(self, tok: object) -> None:
        self.tok = tok
        self.sizes: list[int] = []
        self.eos_token_id = getattr(tok, "eos_token_id", None)

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        self.sizes.append(len(ids))
        return self.tok.decode(ids, skip_special_tokens=skip_special_tokens)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir: Path):  # type: ignore[no-untyped-def]
    spec = ModelSpec(path=str(tiny_llama_dir), device="cpu", runtime="transformers")
    return load(spec, lite=True).tokenizer


def test_incremental_text_equals_full_decode_including_split_characters(tokenizer) -> None:  # type: ignore[no-untyped-def]
    text = "Grüße, 東京! naïve café 🙂 done.\nNext line: ünïcödé ✓"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    rng = random.Random(0)
    ids = ids + [rng.randrange(len(tokenizer)) for _ in range(200)]
    detok = IncrementalDetokenizer(tokenizer)
    pieces = [detok.add(t) for t in ids]
    pieces.append(detok.flush())
    full = tokenizer.decode(ids, skip_special_tokens=True)
    assert "".join(pieces) == full.rstrip("\ufffd")
    assert all("\ufffd" not in p for p in pieces[: len(text)])


def test_detokenizer_work_per_token_does_not_grow_with_the_reply(tokenizer) -> None:  # type: ignore[no-untyped-def]
    counting = CountingTokenizer(tokenizer)
    detok = IncrementalDetokenizer(counting)
    rng = random.Random(1)
    for _ in range(2000):
        detok.add(rng.randrange(10, len(tokenizer)))
    # Each decode sees a short window, never the whole reply (the old loop decoded all
    # generated ids on every token: sizes 1, 2, ..., 2000).
    assert max(counting.sizes) <= 16
    assert len(counting.sizes) == 2 * 2000


def test_stop_filter_holds_back_a_possible_stop_and_cuts_at_the_first() -> None:
    f = StopFilter(["\nUser:", "###"])
    out = [f.feed("Hello"), f.feed(" there\nUs"), f.feed("e"), f.feed("d it ##"), f.feed("#tail")]
    assert out == ["Hello", " there", "", "\nUsed it ", ""]
    assert f.stopped and f.flush() == ""
    g = StopFilter(["\nUser:"])
    assert g.feed("a\nUs") == "a" and not g.stopped and g.flush() == "\nUs"


def test_a_2000_token_reply_decodes_windows_not_the_whole_reply(tiny_llama_dir: Path) -> None:
    lm = load(ModelSpec(path=str(tiny_llama_dir), device="cpu", runtime="transformers"), lite=True)
    counting = CountingTokenizer(lm.tokenizer)
    params = SamplingParams(temperature=0, max_new_tokens=2000, ignore_eos=True, repetition_penalty=1.0)
    ids = lm.tokenizer("The quick brown fox", add_special_tokens=False)["input_ids"]
    chunks = list(stream_generate(lm.model, counting, ids, params))
    assert chunks[-1].new_tokens == 2000 and chunks[-1].finish_reason == "length"
    assert max(counting.sizes) <= 16
