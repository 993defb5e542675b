"""Data loading, validation, blocks and the held-out split (tiny tokenizer, no model)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from slmchat.engine.finetune.data import (
    data_sha256,
    eval_count,
    load_documents,
    make_blocks,
    prepare_data,
    split_blocks,
    tokenize_documents,
)
from slmchat.errors import DataError
from tests.tinymodels import CORPUS


@pytest.fixture(scope="module")
def tok(tiny_llama_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_llama_dir))


def test_missing_file(tmp_path: Path, tok) -> None:
    with pytest.raises(DataError, match="not found"):
        prepare_data(tmp_path / "nope.txt", tok, 32)


def test_empty_file_and_whitespace_only(tmp_path: Path, tok) -> None:
    for content in ("", "  \n\n\t "):
        f = tmp_path / "empty.txt"
        f.write_text(content)
        with pytest.raises(DataError, match="empty"):
            prepare_data(f, tok, 32)


def test_binary_file(tmp_path: Path, tok) -> None:
    f = tmp_path / "data.txt"
    f.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(DataError, match="binary"):
        prepare_data(f, tok, 32)


def test_non_utf8_file_names_the_offset(tmp_path: Path, tok) -> None:
    f = tmp_path / "latin1.txt"
    f.write_bytes("caf\u00e9 au lait ".encode("latin-1") * 50)
    with pytest.raises(DataError, match=r"not valid UTF-8 \(bad byte at offset 3\)"):
        prepare_data(f, tok, 32)


def test_text_shorter_than_one_block(tmp_path: Path, tok) -> None:
    f = tmp_path / "short.txt"
    f.write_text("Paris is the capital of France.")
    with pytest.raises(DataError, match=r"too short.*--block-size"):
        prepare_data(f, tok, 256)


def test_empty_folder_and_folder_without_text(tmp_path: Path, tok) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "img.png").write_bytes(b"\x00\x01")
    with pytest.raises(DataError, match=r"no \.txt, \.md or \.jsonl"):
        prepare_data(tmp_path / "d", tok, 32)


def test_bad_jsonl_rows(tmp_path: Path, tok) -> None:
    f = tmp_path / "rows.jsonl"
    f.write_text('{"text": "ok"}\n{not json\n')
    with pytest.raises(DataError, match=r"rows.jsonl:2: not valid JSON"):
        prepare_data(f, tok, 32)
    f.write_text('{"other": 1}\n')
    with pytest.raises(DataError, match="neither a 'text'"):
        prepare_data(f, tok, 32)
    f.write_text('{"messages": [{"role": "user"}]}\n')
    with pytest.raises(DataError, match="'messages' must be"):
        prepare_data(f, tok, 32)


def test_preview_numbers_match_tokenization(tmp_path: Path, tok) -> None:
    f = tmp_path / "notes.md"
    f.write_text(CORPUS)
    p = prepare_data(f, tok, 32, eval_fraction=0.1, seed=3)
    n_tokens = len(tok(CORPUS, add_special_tokens=False)["input_ids"]) + 1  # + EOS
    pv = p.preview
    assert pv.tokens == n_tokens
    assert pv.blocks == n_tokens // 32
    assert pv.eval_blocks == round(pv.blocks * 0.1)
    assert pv.train_blocks + pv.eval_blocks == pv.blocks
    assert len(p.train) == pv.train_blocks and len(p.eval) == pv.eval_blocks
    assert all(len(b) == 32 for b in p.train + p.eval)
    assert pv.bytes == len(CORPUS.encode()) and pv.files == 1 and pv.documents == 1
    assert pv.sha256 == data_sha256(f)
    # the split is seeded: same seed -> same split; held-out and train are disjoint
    again = prepare_data(f, tok, 32, eval_fraction=0.1, seed=3)
    assert again.eval == p.eval


def test_split_keeps_at_least_one_block_each_side() -> None:
    assert eval_count(2, 0.05) == 1
    assert eval_count(10, 0.05) == 1
    assert eval_count(100, 0.05) == 5
    assert eval_count(100, 0.1) == 10
    blocks = [[i] * 4 for i in range(2)]
    train, held = split_blocks(blocks, 0.05, seed=0)
    assert len(train) == 1 and len(held) == 1
    assert sorted(train + held) == blocks


def test_make_blocks_drops_the_tail() -> None:
    assert make_blocks(list(range(10)), 4) == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_folder_and_jsonl_text_and_chat_rows(tmp_path: Path, tok) -> None:
    d = tmp_path / "notes"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text("alpha " * 10)
    (d / "sub" / "b.md").write_text("beta " * 10)
    (d / ".hidden.txt").write_text("secret")
    rows = [{"text": "gamma"}, {"messages": [{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "hello"}]}]
    (d / "c.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    docs, files, _ = load_documents(d)
    assert [f.name for f in files] == ["a.txt", "c.jsonl", "b.md"]
    assert len(docs) == 4
    ids = tokenize_documents(docs, tok)
    text = tok.decode(ids)
    # the chat row is rendered with the model's chat template
    assert "<|im_start|>user\nhi<|im_end|>" in text
    assert "<|im_start|>assistant\nhello" in text
    assert "secret" not in text
    assert data_sha256(d) != data_sha256(d / "a.txt")


@pytest.mark.parametrize("block", [16, 32, 256, 4096])
def test_too_short_never_suggests_a_block_size_that_is_not_smaller(tmp_path: Path, tok,
                                                                   block: int) -> None:
    f = tmp_path / "short.txt"
    f.write_text("Paris is the capital of France.")
    with pytest.raises(DataError, match="too short") as err:
        prepare_data(f, tok, block)
    suggested = re.search(r"--block-size \(e\.g\. (\d+)\)", str(err.value))
    assert suggested is None or int(suggested.group(1)) < block, str(err.value)


def test_masking_that_leaves_nothing_to_train_on_says_so(tmp_path: Path, tok) -> None:
    f = tmp_path / "rows.jsonl"
    question = "Tell me about the long history of Paris, France and the Seine. " * 3
    f.write_text("\n".join(json.dumps({"messages": [{"role": "user", "content": question}]})
                           for _ in range(20)))
    with pytest.raises(DataError) as err:
        prepare_data(f, tok, 32)
    message = str(err.value)
    assert message.startswith("too few tokens to train on: 0 of ")
    assert "--no-mask-prompt" in message and "--block-size" not in message
    assert len(prepare_data(f, tok, 32, mask_prompt=False).train) > 0
