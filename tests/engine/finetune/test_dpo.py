"""Preference tuning from marks: pairs from edits and good/bad regenerations, a DPO run in
a run folder (finishes, resumes after kill -9), and the preference share it improves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slmchat.cli import main
from slmchat.engine.finetune import rundir as runs
from slmchat.engine.finetune.args import TrainArgs
from slmchat.engine.finetune.dpo import (
    REFERENCE,
    evaluate_pairs,
    load_pairs,
    prepare_pairs,
    reference_logps,
    split_pairs,
)
from slmchat.engine.finetune.job import run_job
from slmchat.engine.finetune.plan import prepare_run, preview
from slmchat.engine.model.loader import load
from slmchat.engine.model.spec import ModelSpec
from slmchat.engine.store import curation
from slmchat.engine.store.store import Store
from slmchat.errors import DataError, InvalidParameterError

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CAPITALS = [("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
            ("Japan", "Tokyo"), ("Egypt", "Cairo"), ("Peru", "Lima"), ("Kenya", "Nairobi")]


def _pairs_file(path: Path, flip_held_out: bool = False) -> Path:
    """A calm reply preferred to the same reply shouted (one token apart, so length decides
    nothing). ``flip_held_out``: the held-out prompts prefer the opposite, which training
    cannot learn, so their loss rises."""
    rows = []
    for country, city in CAPITALS:
        for q in (f"What is the capital of {country}?", f"Name the capital of {country}."):
            rows.append({"prompt": [{"role": "user", "content": q}],
                         "chosen": [{"role": "assistant", "content": f"It is {city}."}],
                         "rejected": [{"role": "assistant", "content": f"It is {city}!"}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    if flip_held_out:
        _, held = split_pairs(load_pairs(path)[0], 0.25, seed=0)
        flip = {json.dumps(p.prompt) for p in held}
        for row in rows:
            if json.dumps(tuple(row["prompt"])) in flip:
                row["chosen"], row["rejected"] = row["rejected"], row["chosen"]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def dpo_args(data: Path, model: Path, **kw) -> TrainArgs:
    base = dict(data=str(data), model=str(model), method="dpo", max_steps=12, block_size=48,
                batch_size=4, lr=5e-3, eval_fraction=0.25, save_every=4, device="cpu",
                bf16="off", lora_dropout=0.0)
    base.update(kw)
    return TrainArgs(**base)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "conversations.db")
    yield s
    s.close()


def test_pairs_come_from_edits_and_good_bad_regenerations(store: Store, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    conv = store.create_conversation("t", {"system_prompt": "Be brief."})
    store.add_message(conv.id, "user", "Capital of France?")
    first = store.add_message(conv.id, "assistant", "It is Lyon.")
    store.add_message(conv.id, "user", "And of Italy?")
    bad = store.add_message(conv.id, "assistant", "Milan, I think.")
    good = store.add_message(conv.id, "assistant", "Rome.", sibling_of=bad.id)
    curation.set_preferred(store, first.id, "Paris.")  # an edit: chosen vs the model's text
    curation.set_rating(store, bad.id, "bad")
    curation.set_rating(store, good.id, "good")
    other = store.create_conversation("u")  # marks without a counterpart give no pair
    store.add_message(other.id, "user", "hi")
    curation.set_rating(store, store.add_message(other.id, "assistant", "hello").id, "good")

    rows, edits, branches, convs = curation.preference_pairs(store)
    assert (edits, branches, convs) == (1, 1, 1)
    system = {"role": "system", "content": "Be brief."}
    assert rows[0] == {
        "prompt": [system, {"role": "user", "content": "Capital of France?"}],
        "chosen": [{"role": "assistant", "content": "Paris."}],
        "rejected": [{"role": "assistant", "content": "It is Lyon."}]}
    # the second pair's prompt is the branch it answers, with the edited earlier reply
    assert rows[1]["prompt"] == [system, {"role": "user", "content": "Capital of France?"},
                                 {"role": "assistant", "content": "Paris."},
                                 {"role": "user", "content": "And of Italy?"}]
    assert rows[1]["chosen"][0]["content"] == "Rome."
    assert rows[1]["rejected"][0]["content"] == "Milan, I think."

    out = tmp_path / "pairs.jsonl"
    report = curation.export_pairs(store, out)
    assert report.pairs == 2 and [json.loads(x) for x in out.read_text().splitlines()] == rows
    assert len(load_pairs(out)[0]) == 2  # the fine-tune reads what the export writes
    empty = Store(tmp_path / "empty.db")
    with pytest.raises(InvalidParameterError, match="no preference pairs"):
        curation.export_pairs(empty, tmp_path / "none.jsonl")
    empty.close()
    assert not (tmp_path / "none.jsonl").exists()


def test_export_chats_pairs_cli(store: Store, tmp_path: Path, isolated_dirs: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export-chats", "--pairs"]) == 2  # nothing marked yet
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no preference pairs" in err
    default = Store.open_default()
    conv = default.create_conversation("t")
    default.add_message(conv.id, "user", "q")
    reply = default.add_message(conv.id, "assistant", "wrong")
    curation.set_preferred(default, reply.id, "right")
    default.close()
    out = tmp_path / "p.jsonl"
    assert main(["export-chats", "--pairs", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 preference pair(s)" in printed and "--method dpo" in printed
    assert json.loads(out.read_text())["rejected"][0]["content"] == "wrong"


def test_bad_pair_files_are_one_clear_line(tmp_path: Path, tiny_llama_dir: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    for text, message in (
        ('{"prompt": "q", "chosen": "a"}\n', "needs 'prompt', 'chosen' and 'rejected'"),
        ('{"prompt": "q", "chosen": "a", "rejected": "a"}\n' * 2, "the same reply"),
        ('{"prompt": "q", "chosen": "", "rejected": "b"}\n', "non-empty assistant reply"),
        ('{"prompt": "q", "chosen": "a", "rejected": "b"}\n', "at least 2 preference pairs"),
        ("not json\n", "not valid JSON"),
    ):
        bad.write_text(text)
        with pytest.raises(DataError, match=message) as err:
            preview(dpo_args(bad, tiny_llama_dir))
        assert "\n" not in str(err.value)
    with pytest.raises(InvalidParameterError, match="dpo-beta"):
        dpo_args(bad, tiny_llama_dir, dpo_beta=0).validate()


def test_held_out_pairs_keep_a_prompt_together(tmp_path: Path) -> None:
    path = _pairs_file(tmp_path / "p.jsonl")
    # every prompt twice more, with other rejected replies: a prompt's pairs stay together
    extra = [json.loads(line) for line in path.read_text().splitlines()]
    for row in extra:
        row["rejected"][0]["content"] = "I do not know."
    path.write_text(path.read_text() + "".join(json.dumps(r) + "\n" for r in extra))
    pairs, _, _ = load_pairs(path)
    train, held = split_pairs(pairs, 0.25, seed=0)
    assert len(held) >= 8 and len(train) + len(held) == len(pairs) == 32

    def prompts(ps: list) -> set[str]:
        return {json.dumps(p.prompt) for p in ps}

    assert not prompts(train) & prompts(held)
    assert split_pairs(pairs, 0.25, seed=0) == (train, held)
    assert split_pairs(pairs, 0.25, seed=1) != (train, held)


def test_dpo_run_raises_the_preference_share_on_its_training_pairs(
        tmp_path: Path, tiny_llama_dir: Path) -> None:
    data = _pairs_file(tmp_path / "pairs.jsonl")
    args = dpo_args(data, tiny_llama_dir, early_stop_patience=0)
    pv = preview(args)
    assert pv.pairs and pv.data["train_blocks"] == 12 and pv.data["eval_blocks"] == 4
    assert any("preference pair" in line for line in pv.lines())
    run_dir = prepare_run(args)
    status = run_job(run_dir)
    assert status["state"] == "done", status["message"]
    m = status["metrics"]
    assert m["eval_loss_before"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference
    assert {"pref_share_before", "pref_share_after", "reward_accuracy_after"} <= set(m)
    assert m["perplexity_after"] is None
    rows = runs.read_progress(run_dir)
    assert [r["step"] for r in rows] == list(range(13))
    assert rows[0]["pref_share"] is not None and rows[-1]["pref_share"] is not None
    assert (run_dir / REFERENCE).is_file()

    # The share on the pairs it trained on: the base model against the result.
    tuned = load(ModelSpec(path=str(status["out"]), device="cpu"))
    prepared = prepare_pairs(data, tuned.tokenizer, args.block_size, args.eval_fraction,
                             args.seed)
    ref = reference_logps(tuned.model, prepared, args, "cpu", None)
    after = evaluate_pairs(tuned.model, prepared.train, ref["train"], args, "cpu")
    with tuned.model.disable_adapter():
        before = evaluate_pairs(tuned.model, prepared.train, ref["train"], args, "cpu")
    assert before["loss"] == pytest.approx(0.6931, abs=1e-3)
    assert after["pref_share"] > before["pref_share"]
    assert after["pref_share"] == 1.0 and after["loss"] < before["loss"] - 0.1
    # the preference generalises to the held-out prompts (other countries)
    assert m["pref_share_after"] > m["pref_share_before"] or m["pref_share_before"] == 1.0
    assert m["eval_loss_after"] < m["eval_loss_before"]


def test_dpo_resumes_after_kill_like_an_uninterrupted_run(tmp_path: Path,
                                                          tiny_llama_dir: Path) -> None:
    from safetensors.torch import load_file

    data = _pairs_file(tmp_path / "pairs.jsonl")
    args = dict(max_steps=30, save_every=2)
    run_dir = prepare_run(dpo_args(data, tiny_llama_dir, **args))
    env = dict(os.environ, SLMCHAT_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.Popen([sys.executable, "-m", "slmchat.engine.finetune", str(run_dir)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not any(s >= 4 for s, _ in runs.checkpoints(run_dir)):
            assert proc.poll() is None, "train process exited early"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = runs.latest_checkpoint(run_dir)
    assert killed_at is not None and killed_at[0] < 30, "the run finished before the kill"
    assert runs.summarize(run_dir).state == "dead"
    status = run_job(run_dir)
    ref_dir = prepare_run(dpo_args(data, tiny_llama_dir, **args))
    ref = run_job(ref_dir)
    assert status["state"] == "done" and status["step"] == 30, status["message"]
    assert [r["step"] for r in runs.read_progress(run_dir)] == list(range(31))
    resumed = load_file(str(run_dir / "model/adapter_model.safetensors"))
    straight = load_file(str(ref_dir / "model/adapter_model.safetensors"))
    for key in resumed:
        assert (resumed[key] - straight[key]).abs().max() < 1e-5, key
    assert status["metrics"]["pref_share_after"] == ref["metrics"]["pref_share_after"]


def test_dpo_stops_early_on_held_out_pairs_and_keeps_the_best_step(
        tmp_path: Path, tiny_llama_dir: Path) -> None:
    """Held-out prompts that prefer the opposite of the training pairs: the held-out DPO
    loss rises, the run stops and keeps its best evaluated step."""
    data = _pairs_file(tmp_path / "pairs.jsonl", flip_held_out=True)
    status = run_job(prepare_run(dpo_args(data, tiny_llama_dir, max_steps=40, eval_every=1,
                                          early_stop_patience=2)))
    assert status["state"] == "done", status["message"]
    m = status["metrics"]
    assert m["stopped_early_at"] is not None and m["stopped_early_at"] < 40
    assert m["result_step"] == m["best_step"] < m["stopped_early_at"]
    assert m["best_eval_loss"] < m["eval_loss_before"] + 1e-6 or m["best_step"] == 1
    assert m["eval_loss_after"] == pytest.approx(m["best_eval_loss"])
    assert "stopped early" in status["message"]
