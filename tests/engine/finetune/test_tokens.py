"""Streaming tokenisation into the token cache: bounded memory, tokenised once, same ids."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from slmchat.engine.finetune import data as fdata
from slmchat.engine.finetune.data import (
    Document,
    prepare_data,
    tokenize_documents,
    tokenize_masked,
)
from slmchat.engine.finetune.tokens import Blocks, cache_root
from slmchat.errors import DataError
from tests.tinymodels import CORPUS

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def tok(tiny_llama_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_llama_dir))


def varied_text(n_bytes: int) -> str:
    lines = CORPUS.splitlines()
    out, size, i = [], 0, 0
    while size < n_bytes:
        line = f"{i} {lines[i % len(lines)]} {i * 7919 % 1000}\n" + ("\n" if i % 9 == 0 else "")
        out.append(line)
        size += len(line)
        i += 1
    return "".join(out)


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fdata, "READ_BYTES", 4096)
    monkeypatch.setattr(fdata, "PIECE_CHARS", 700)


def test_streamed_ids_are_those_of_the_whole_text(tmp_path: Path, tok, small_pieces) -> None:
    text = varied_text(60_000)
    f = tmp_path / "notes.txt"
    f.write_text(text)
    p = prepare_data(f, tok, 32, eval_fraction=0.1, seed=1)
    whole = tokenize_documents([Document("x", text=text)], tok)
    assert p.preview.tokens == len(whole)
    assert p.tokens_dir is not None
    ids = (p.tokens_dir / "ids.bin").read_bytes()
    import numpy as np

    assert np.frombuffer(ids, dtype=np.uint16).tolist() == whole
    assert p.preview.bytes == len(text.encode())
    # the held-out split is the end of the same blocks
    blocks = fdata.make_blocks(whole, 32)
    train, held = fdata.split_blocks(blocks, 0.1)
    assert p.eval == held and p.train == train


def test_chat_rows_stream_with_their_masks(tmp_path: Path, tok, small_pieces) -> None:
    rows = []
    for i in range(300):
        rows.append({"messages": [{"role": "user", "content": f"question {i} about Paris?"},
                                  {"role": "assistant", "content": f"answer {i}: the Seine."}]})
        rows.append({"text": f"plain row {i} " * 3})
    f = tmp_path / "rows.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    docs, _, _ = fdata.load_documents(f)
    ids, mask = tokenize_masked(docs, tok)
    p = prepare_data(f, tok, 32, eval_fraction=0.1)
    assert p.preview.masked and p.preview.tokens == len(ids)
    pairs = [(b, m) for b, m in zip(fdata.make_blocks(ids, 32), fdata.make_blocks(mask, 32),
                                    strict=True) if any(m)]
    train, held = fdata.split_blocks(pairs, 0.1)
    assert list(p.train) == [b for b, _ in train] and list(p.eval) == [b for b, _ in held]
    assert p.train_mask is not None and p.eval_mask is not None
    assert list(p.train_mask) == [m for _, m in train]
    assert list(p.eval_mask) == [m for _, m in held]
    assert p.preview.trained_tokens == sum(sum(m) for _, m in train)
    plain = prepare_data(f, tok, 32, mask_prompt=False)
    assert plain.train_mask is None
    assert plain.preview.tokens == len(tokenize_documents(docs, tok))


def test_bad_utf8_after_the_first_piece_names_the_file_offset(tmp_path: Path, tok,
                                                              small_pieces) -> None:
    f = tmp_path / "late.txt"
    good = varied_text(20_000).encode()
    f.write_bytes(good + b"caf\xe9\n")
    with pytest.raises(DataError, match=rf"bad byte at offset {len(good) + 3}\)"):
        prepare_data(f, tok, 32)
    assert not list(cache_root().iterdir())  # nothing half-written is kept


def test_tokenised_once_for_the_preview_and_the_run(tmp_path: Path, tiny_llama_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from slmchat.engine.finetune.args import TrainArgs
    from slmchat.engine.finetune.job import run_job
    from slmchat.engine.finetune.plan import prepare_run, preview

    f = tmp_path / "notes.txt"
    f.write_text(varied_text(30_000))
    calls: list[int] = []
    real = fdata._encode

    def counting(tokenizer, pieces):
        calls.append(len(pieces))
        return real(tokenizer, pieces)

    monkeypatch.setattr(fdata, "_encode", counting)
    seen: list[tuple[int, int]] = []
    args = TrainArgs(data=str(f), model=str(tiny_llama_dir), max_steps=1, block_size=32,
                     batch_size=2, max_eval_blocks=2, device="cpu", bf16="off")
    pv = preview(args, progress=lambda done, total: seen.append((done, total)))
    assert calls and seen[-1] == (f.stat().st_size, f.stat().st_size)
    first = len(calls)
    pv2 = preview(args)  # the panel previews twice
    status = run_job(prepare_run(args))
    assert status["state"] == "done", status
    assert len(calls) == first  # neither the second preview nor the run tokenised again
    assert pv2.data == pv.data == status["data"]


def test_blocks_are_views_that_behave_like_lists() -> None:
    import numpy as np

    data = np.arange(20, dtype=np.uint16)
    b = Blocks(data, 4, [3, 0, 2])
    assert len(b) == 3 and b[0] == [12, 13, 14, 15] and b[-1] == [8, 9, 10, 11]
    assert isinstance(b[0][0], int)
    assert b[1:] == [[0, 1, 2, 3], [8, 9, 10, 11]] and len(b[:1]) == 1
    tail = [[1]]
    assert b + tail == [*list(b), [1]] and tail + b == [[1], *list(b)]
    assert b != [[0]]


def test_preparing_a_large_file_stays_under_a_memory_bound(tmp_path: Path,
                                                           tiny_llama_dir: Path) -> None:
    """12 MB of text: the old whole-file tokenisation peaked at ~100x the file (over 1 GB
    above the baseline); streaming stays within a few hundred MB whatever the size."""
    f = tmp_path / "big.txt"
    f.write_text(varied_text(12 << 20))
    script = textwrap.dedent(f"""
        import json, resource, sys
        from transformers import AutoTokenizer
        from slmchat.engine.finetune.data import prepare_data
        tok = AutoTokenizer.from_pretrained({str(tiny_llama_dir)!r})
        tok("warm up", add_special_tokens=False)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        p = prepare_data({str(f)!r}, tok, 256)
        p.train[0], p.eval[0]
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{"base_mb": base / 1024, "peak_mb": peak / 1024,
                           "tokens": p.preview.tokens}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=ROOT, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["tokens"] > 5_000_000
    assert got["peak_mb"] - got["base_mb"] < 400, got


def test_a_run_that_tokenises_reports_how_far_it_has_read(tmp_path: Path,
                                                          tiny_llama_dir: Path) -> None:
    from slmchat.engine.finetune.args import TrainArgs
    from slmchat.engine.finetune.job import run_job
    from slmchat.engine.finetune.plan import prepare_run

    f = tmp_path / "notes.txt"
    f.write_text(varied_text(20_000))
    rows: list[dict] = []
    args = TrainArgs(data=str(f), model=str(tiny_llama_dir), max_steps=1, block_size=32,
                     batch_size=2, max_eval_blocks=2, device="cpu", bf16="off")
    status = run_job(prepare_run(args), report=rows.append)  # no preview: the run reads it
    assert status["state"] == "done", status
    reading = [r["message"] for r in rows if str(r.get("message", "")).startswith("tokenising")]
    assert reading and reading[-1].endswith("(100%)")
