"""Passages fit the context budget left after the conversation; the CLI cites them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from slmchat.cli import main
from slmchat.engine.generation.prompting import ChatMessage, build_prompt
from slmchat.engine.retrieval.context import fit_context, with_context
from slmchat.engine.retrieval.index import DocumentIndex, Hit
from tests.engine.retrieval.corpus import make_corpus


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_llama_dir))


def _hit(i: int, words: int) -> Hit:
    return Hit(chunk_id=i, path=f"/docs/f{i}.md", start_line=i, end_line=i + 1, heading="",
               text=" ".join(["fox"] * words), score=-float(10 - i))


def _measure(tokenizer, context: int = 256, max_new: int = 16):
    return lambda msgs: build_prompt(tokenizer, msgs, context, max_new)


def test_passages_fit_after_the_conversation_best_first(tokenizer) -> None:
    msgs = [ChatMessage("user", "where is the fox?")]
    hits = [_hit(1, 30), _hit(2, 400), _hit(3, 20)]  # the second cannot fit in 1024 tokens
    measure = _measure(tokenizer, context=1024)
    aug = fit_context(msgs, hits, measure, max_new_tokens=16)
    assert [h.chunk_id for h in aug.sources] == [1, 3]  # too long skipped, shorter kept
    prompt = measure(aug.messages)
    assert prompt.prompt_tokens <= 1024 - 16 and not prompt.truncated
    assert aug.context_tokens == prompt.prompt_tokens - measure(msgs).prompt_tokens
    assert aug.messages[-1].content == with_context("where is the fox?", aug.sources)
    assert aug.messages[-1].content.index("[1] f1.md:1-2") < aug.messages[-1].content.index(
        "[2] f3.md:3-4")
    assert aug.provenance()["chunks"] == [1, 3]


def test_the_conversation_is_never_dropped_for_passages(tokenizer) -> None:
    history = []
    for i in range(6):
        history += [ChatMessage("user", f"question {i} " + "x " * 10),
                    ChatMessage("assistant", f"answer {i} " + "y " * 10)]
    msgs = [ChatMessage("system", "be brief"), *history, ChatMessage("user", "and the fox?")]
    measure = _measure(tokenizer, context=720)
    base = measure(msgs)
    assert 400 < base.prompt_tokens < 550 and base.dropped_messages == 0
    aug = fit_context(msgs, [_hit(1, 80), _hit(2, 8)], measure, max_new_tokens=16)
    after = measure(aug.messages)
    assert [h.chunk_id for h in aug.sources] == [2]  # the long one would push out a turn
    assert after.dropped_messages == 0 and after.prompt_tokens <= 720 - 16
    assert len(aug.messages) == len(msgs) and aug.messages[:-1] == msgs[:-1]


def test_no_room_left_means_no_passages(tokenizer) -> None:
    msgs = [ChatMessage("user", "fox " * 200)]
    aug = fit_context(msgs, [_hit(1, 5)], _measure(tokenizer), max_new_tokens=16)
    assert aug.sources == [] and aug.messages == msgs and aug.candidates == 1


def test_max_context_tokens_caps_the_passages(tokenizer) -> None:
    msgs = [ChatMessage("user", "fox?")]
    hits = [_hit(i, 12) for i in range(1, 6)]  # each ~50 tokens, the instruction ~100
    aug = fit_context(msgs, hits, _measure(tokenizer, context=4096), max_new_tokens=16,
                      max_context_tokens=300)
    assert 0 < len(aug.sources) < 5 and 0 < aug.context_tokens <= 300


# --- slmchat generate --context --------------------------------------------------------

@pytest.fixture(scope="module")
def long_tiny_llama(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with room for passages (its tokenizer spends ~4 tokens a word)."""
    import json
    import shutil

    folder = tmp_path_factory.mktemp("tiny-llama-2k") / "model"
    shutil.copytree(tiny_llama_dir, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["max_position_embeddings"] = 2048
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def test_generate_with_context_prints_sources(capsys: pytest.CaptureFixture[str],
                                              long_tiny_llama: Path, tmp_path: Path) -> None:
    docs = make_corpus(tmp_path / "docs")
    code = main(["generate", "How often is the compost heap turned?", "--model",
                 str(long_tiny_llama), "-t", "0", "--max-new-tokens", "4",
                 "--context", str(docs)])
    out, err = capsys.readouterr()
    assert code == 0, err
    sources = out.split("\nSources:\n", 1)[1].splitlines()
    assert sources and all(re.fullmatch(r"/.+:\d+(-\d+)?( \(page \d+\))?", s) for s in sources)
    assert sources[0].startswith(str((docs / "notes.md").resolve()) + ":")
    assert "skipped" in err and "photo.png" in err
    # The passage was indexed into the data folder's own database, not the conversations one.
    from slmchat.paths import data_dir

    assert (data_dir() / "retrieval.db").is_file()
    assert DocumentIndex(data_dir() / "retrieval.db").count_chunks() > 0


@pytest.mark.parametrize(("extra", "message"), [
    (["--context", "/nonexistent/docs"], "no such file or folder"),
    (["--context", "DOCS", "--raw"], "--context answers in chat mode"),
    (["--context", "DOCS", "--context-tokens", "0"], "must be >= 1"),
])
def test_generate_context_bad_input_is_one_line(capsys: pytest.CaptureFixture[str],
                                                tiny_llama_dir: Path, tmp_path: Path,
                                                extra: list[str], message: str) -> None:
    docs = make_corpus(tmp_path / "docs")
    argv = ["generate", "hi", "--model", str(tiny_llama_dir),
            *[str(docs) if a == "DOCS" else a for a in extra]]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's type check
        code = int(exc.code or 0)
    _, err = capsys.readouterr()
    assert code == 2 and message in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1
