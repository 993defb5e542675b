"""Data loading, validation, blocks and the held-out split (tiny tokenizer, no model)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from slmchat.engine.finetune import data as fdata
from slmchat.engine.finetune.data import (
    auto_block_size,
    data_sha256,
    eval_count,
    eval_warning,
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
    assert pv.eval_blocks == eval_count(pv.blocks, 0.1)
    assert pv.train_blocks + pv.eval_blocks == pv.blocks
    assert pv.eval_tokens == 32 * pv.eval_blocks
    assert len(p.train) == pv.train_blocks and len(p.eval) == pv.eval_blocks
    assert all(len(b) == 32 for b in p.train + p.eval)
    assert pv.bytes == len(CORPUS.encode()) and pv.files == 1 and pv.documents == 1
    assert pv.sha256 == data_sha256(f)
    again = prepare_data(f, tok, 32, eval_fraction=0.1, seed=4)
    assert again.eval == p.eval  # by position: the seed does not move it


def test_held_out_is_at_least_a_tenth_and_eight_blocks_where_the_text_allows() -> None:
    assert eval_count(100, 0.1) == 10
    assert eval_count(1000, 0.1) == 100
    assert eval_count(23, 0.1) == 8  # the 6k-token file at block 256: 8, not 1
    assert eval_count(47, 0.1) == 8
    assert eval_count(81, 0.1) == 9  # 8.1 rounds up: at least a tenth
    assert eval_count(10, 0.1) == 5  # too short for 8: half, the rest trains
    assert eval_count(2, 0.1) == 1
    assert eval_warning(23, 8, 256) is None
    warning = eval_warning(10, 5, 256)
    assert warning is not None and "only 5 held-out" in warning and "128" in warning


def test_held_out_is_the_end_of_the_text_not_a_sample_from_inside() -> None:
    blocks = [[i] * 4 for i in range(100)]
    train, held = split_blocks(blocks, 0.1)
    assert held == blocks[90:] and train == blocks[:90]
    train, held = split_blocks(blocks[:2], 0.1)
    assert len(train) == 1 and len(held) == 1 and held == [blocks[1]]


def test_each_file_gives_its_end() -> None:
    # Three documents of 40, 40 and 20 blocks: 10 held out, shared 4/4/2, each the
    # document's last blocks, in text order.
    docs = [0] * 40 + [1] * 40 + [2] * 20
    blocks = list(range(100))
    train, held = split_blocks(blocks, 0.1, docs)
    assert held == [36, 37, 38, 39, 76, 77, 78, 79, 98, 99]
    assert sorted(train + held) == blocks
    # Many one-block files: whole files are held out, the later ones first.
    train, held = split_blocks(list(range(20)), 0.1, list(range(20)))
    assert held == list(range(12, 20)) and train == list(range(12))


def test_small_text_gets_a_smaller_block_not_a_one_block_test(tmp_path: Path, tok) -> None:
    assert auto_block_size(60_000) == 256
    assert auto_block_size(6_000) == 128
    assert auto_block_size(3_000) == 64
    assert auto_block_size(100) == 32
    f = tmp_path / "notes.md"
    f.write_text(CORPUS * 8)
    p = prepare_data(f, tok, None)
    n_tokens = p.preview.tokens
    assert p.preview.auto_block and p.preview.block_size == auto_block_size(n_tokens)
    assert p.preview.eval_blocks >= 8 and p.preview.eval_warning is None
    ids = tokenize_documents([fdata.Document("x", text=CORPUS * 8)], tok)
    size = p.preview.block_size
    n = n_tokens // size
    assert list(p.eval) == [ids[i * size:(i + 1) * size] for i in range(n - len(p.eval), n)]


def test_folder_holds_out_the_end_of_each_file(tmp_path: Path, tok) -> None:
    d = tmp_path / "notes"
    d.mkdir()
    (d / "a.txt").write_text(CORPUS * 4)
    (d / "b.txt").write_text(CORPUS * 4)
    p = prepare_data(d, tok, 32)
    ids_a = tokenize_documents([fdata.Document("a", text=CORPUS * 4)], tok)
    half = len(ids_a)
    starts = [int(r) * 32 for r in p.eval.rows]  # type: ignore[attr-defined]
    before_b = [s for s in starts if s < half]
    in_b = [s for s in starts if s >= half]
    assert before_b and in_b  # both files give held-out blocks...
    train_starts = [int(r) * 32 for r in p.train.rows]  # type: ignore[attr-defined]
    # ...and each file's held-out blocks come after all of its training blocks
    assert max(s for s in train_starts if s < half) < min(before_b)
    assert max(train_starts) < min(in_b)


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
