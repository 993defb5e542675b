"""Marking replies, preferred edits, and the training export round trip into finetune."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slmchat.cli import main
from slmchat.engine.store import curation
from slmchat.engine.store.store import Store
from slmchat.errors import InvalidParameterError


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "conversations.db")
    yield s
    s.close()


def _chat(store: Store, pairs: list[tuple[str, str]], system: str | None = None) -> list[int]:
    conv = store.create_conversation("t", {"system_prompt": system} if system else {})
    ids = []
    for q, a in pairs:
        store.add_message(conv.id, "user", q)
        ids.append(store.add_message(conv.id, "assistant", a, provenance={"seed": 1}).id)
    return ids


def test_marks_are_kept_cleared_and_deleted_with_the_message(store: Store) -> None:
    a, b = _chat(store, [("q1", "a1"), ("q2", "a2")])
    curation.set_rating(store, a, "good")
    curation.set_rating(store, b, "bad")
    curation.set_rating(store, b, "good")  # re-marking replaces the mark
    conv = store.get_message(a).conversation_id
    assert curation.ratings(store, conv) == {a: "good", b: "good"}
    curation.set_rating(store, b, None)
    assert curation.ratings(store) == {a: "good"}
    assert curation.rating_of(store.get_message(a)) == "good"
    assert store.get_message(a).provenance["seed"] == 1  # the rest of the provenance kept
    store.delete_conversation(conv)
    assert curation.ratings(store) == {} and curation.marked_conversations(store) == []
    assert store.integrity_check() == "ok"


def test_only_replies_can_be_marked_or_edited(store: Store) -> None:
    (a,) = _chat(store, [("q", "a")])
    user = a - 1
    with pytest.raises(InvalidParameterError, match="only the model's replies"):
        curation.set_rating(store, user, "good")
    with pytest.raises(InvalidParameterError, match="rating must be"):
        curation.set_rating(store, a, "meh")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="empty"):
        curation.set_preferred(store, a, "  ")


def test_preferred_edit_keeps_the_original_in_provenance(store: Store) -> None:
    (a,) = _chat(store, [("capital of France?", "Lyon.")])
    curation.set_preferred(store, a, "Paris.")
    curation.set_preferred(store, a, "Paris is the capital of France.")
    msg = store.get_message(a)
    assert msg.content == "Paris is the capital of France."
    assert curation.original_text(msg) == "Lyon."  # the model's own text, not the 1st edit
    assert msg.provenance["seed"] == 1  # the rest of the provenance is untouched
    assert curation.ratings(store) == {a: "good"}


def test_export_marked_learns_only_good_replies_in_context(store: Store, tmp_path: Path) -> None:
    a1, a2, a3 = _chat(store, [("hi", "hello"), ("2+2?", "5"), ("sure?", "4")], system="Be exact.")
    curation.set_rating(store, a2, "bad")
    curation.set_preferred(store, a3, "It is 4.")
    _chat(store, [("unmarked", "never exported")])
    report = curation.export_training(store, tmp_path / "out.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert (report.rows, report.trained_replies, report.context_replies) == (1, 1, 2)
    assert rows == [{"messages": [
        {"role": "system", "content": "Be exact."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello", "weight": 0},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "5", "weight": 0},
        {"role": "user", "content": "sure?"},
        {"role": "assistant", "content": "It is 4."},
    ]}]
    assert (tmp_path / "out.jsonl").stat().st_mode & 0o777 == 0o600  # private text
    assert a1


def test_export_chosen_conversations_learns_all_but_bad(store: Store, tmp_path: Path) -> None:
    a1, a2 = _chat(store, [("q1", "good answer"), ("q2", "bad answer")])
    curation.set_rating(store, a2, "bad")
    conv = store.get_message(a1).conversation_id
    report = curation.export_training(store, tmp_path / "x.jsonl", [conv])
    (row,) = [json.loads(x) for x in (tmp_path / "x.jsonl").read_text().splitlines()]
    assert [m["content"] for m in row["messages"]] == ["q1", "good answer"]  # cut after it
    assert report.trained_replies == 1 and "weight" not in row["messages"][-1]
    with pytest.raises(InvalidParameterError, match="no conversation 999"):
        curation.export_training(store, tmp_path / "y.jsonl", [999])


def test_nothing_marked_is_a_clear_error(store: Store, tmp_path: Path) -> None:
    _chat(store, [("q", "a")])
    with pytest.raises(InvalidParameterError, match="mark a reply good"):
        curation.export_training(store, tmp_path / "z.jsonl")
    assert not (tmp_path / "z.jsonl").exists()


@pytest.mark.usefixtures("one_torch_thread")
def test_exported_chats_round_trip_into_finetune(tiny_llama_dir: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Mark in the store, `slmchat export-chats`, `slmchat finetune FILE`: the result loads,
    and the fine-tune trained on exactly the good replies' tokens."""
    from transformers import AutoTokenizer

    from slmchat.engine.finetune.data import prepare_data

    store = Store.open_default()
    good_texts = []
    for i in range(8):
        ids = _chat(store, [(f"what is fact {i}?", f"fact {i} is that the quick brown fox runs"),
                            (f"and fact {i + 1}?", "no idea")])
        curation.set_rating(store, ids[0], "good")
        curation.set_rating(store, ids[1], "bad")
        good_texts.append(f"fact {i} is that the quick brown fox runs")
    store.close()
    out = tmp_path / "chats.jsonl"
    assert main(["export-chats", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "8 conversation(s), 8 repl(ies) to learn" in printed and str(out) in printed
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert all(r["messages"][-1]["content"].startswith("fact") for r in rows)  # bad cut off

    tok = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    prepared = prepare_data(out, tok, block_size=32, eval_fraction=0.1)
    learned = "".join(tok.decode([t for t, m in zip(b, mask, strict=True) if m])
                      for b, mask in zip(prepared.train + prepared.eval,
                                         prepared.train_mask + prepared.eval_mask, strict=True))
    assert "quick brown fox" in learned and "what is fact" not in learned
    assert "no idea" not in learned

    model_out = tmp_path / "tuned"
    code = main(["finetune", str(out), "--model", str(tiny_llama_dir), "--max-steps", "2",
                 "--block-size", "32", "--batch-size", "2", "--device", "cpu", "--bf16", "off",
                 "--out", str(model_out)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "assistant tokens (chat rows, prompt masked)" in err
    assert (model_out / "adapter_model.safetensors").is_file()
    from slmchat.engine.model.loader import load
    from slmchat.engine.model.spec import ModelSpec

    assert load(ModelSpec(path=str(model_out), device="cpu")).info.kind == "adapter"


def _grounded_chat(store: Store, recorded: bool) -> int:
    """A question answered from an attached file: the store keeps the user's own text,
    the reply's provenance the chunks it was given (and, since issue 26, that text)."""
    conv = store.create_conversation("cat")
    store.add_message(conv.id, "user", "What is the name of the cat?")
    retrieval = {"chunks": [7], "sources": [{"chunk_id": 7, "path": "/home/me/pets.md"}]}
    if recorded:
        retrieval["user_message"] = ("Answer the question using the excerpts from the "
                                     "user's files below.\n\n[1] pets.md:3\nOur cat is "
                                     "called Pistachio.\n\nQuestion: What is the name of "
                                     "the cat?")
    reply = store.add_message(conv.id, "assistant", "The cat is called Pistachio.",
                              provenance={"retrieval": retrieval})
    curation.set_rating(store, reply.id, "good")
    return conv.id


def test_export_keeps_the_passages_a_grounded_reply_was_given(store: Store,
                                                              tmp_path: Path) -> None:
    """Issue 26 #17: `user: What is the name of the cat?` -> `assistant: The cat is
    called Pistachio.` taught the fact without the text it came from."""
    _grounded_chat(store, recorded=True)
    out = tmp_path / "a.jsonl"
    report = curation.export_training(store, out)
    (row,) = [json.loads(x) for x in out.read_text().splitlines()]
    question = row["messages"][0]["content"]
    assert "Our cat is called Pistachio." in question
    assert question.endswith("Question: What is the name of the cat?")
    assert (report.grounded, report.ungrounded) == (1, 0)
    # Left out on request: the question as typed.
    report = curation.export_training(store, out, with_passages=False)
    (row,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert row["messages"][0]["content"] == "What is the name of the cat?"
    assert report.passages_left_out and report.grounded == 0


def test_export_rebuilds_passages_of_older_replies_or_says_it_cannot(store: Store,
                                                                     tmp_path: Path) -> None:
    _grounded_chat(store, recorded=False)  # written before the text was recorded
    out = tmp_path / "b.jsonl"
    seen = []

    def rebuild(retrieval: dict, question: str) -> str | None:
        seen.append((retrieval["chunks"], question))
        return f"[1] pets.md:3\nOur cat is called Pistachio.\n\nQuestion: {question}"

    report = curation.export_training(store, out, passages=rebuild)
    (row,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert seen == [([7], "What is the name of the cat?")]
    assert "Pistachio" in row["messages"][0]["content"] and report.grounded == 1
    report = curation.export_training(store, out, passages=lambda r, q: None)
    (row,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert row["messages"][0]["content"] == "What is the name of the cat?"
    assert report.ungrounded == 1


def test_export_chats_cli_includes_passages_unless_told(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    store = Store.open_default()
    _grounded_chat(store, recorded=True)
    store.close()
    out = tmp_path / "c.jsonl"
    assert main(["export-chats", "--out", str(out)]) == 0
    assert "1 question(s) answered from attached files" in capsys.readouterr().out
    assert "Pistachio" in json.loads(out.read_text())["messages"][0]["content"]
    assert main(["export-chats", "--out", str(out), "--no-passages"]) == 0
    assert json.loads(out.read_text())["messages"][0]["content"] == \
        "What is the name of the cat?"
