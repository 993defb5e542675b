"""--mask-prompt (loss on assistant tokens only, checked on token ids) and early stopping
(the best evaluated step is the result, not the last)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slmchat.engine.finetune import job as job_mod
from slmchat.engine.finetune.args import TrainArgs
from slmchat.engine.finetune.data import prepare_data
from slmchat.engine.finetune.job import EarlyStop, run_job
from slmchat.engine.finetune.loop import labels_for
from slmchat.engine.finetune.masking import chat_messages, masked_ids
from slmchat.engine.finetune.plan import prepare_run
from tests.tinymodels import build_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CHAT = [
    {"role": "system", "content": "Answer in one line."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris is the capital."},
    {"role": "user", "content": "And of Germany?"},
    {"role": "assistant", "content": "Berlin."},
]


@pytest.mark.parametrize("template", [True, False], ids=["chat-template", "transcript"])
def test_mask_covers_exactly_the_assistant_tokens(template: bool) -> None:
    tok = build_tokenizer(chat_template=template)
    ids, mask = masked_ids(tok, chat_messages(CHAT))
    assert len(ids) == len(mask) and set(mask) == {0, 1}
    trained = tok.decode([i for i, m in zip(ids, mask, strict=True) if m])
    ignored = tok.decode([i for i, m in zip(ids, mask, strict=True) if not m])
    assert "Paris is the capital." in trained and "Berlin." in trained
    for prompt_text in ("capital of France", "And of Germany", "Answer in one line"):
        assert prompt_text not in trained and prompt_text in ignored
    if template:  # the end-of-turn marker of a finished assistant turn is learned too
        assert "Paris is the capital.<|im_end|>" in trained
        assert "<|im_start|>assistant" in ignored and "<|im_start|>assistant" not in trained
    # The masked token stream is exactly what unmasked training tokenizes.
    from slmchat.engine.finetune.data import Document, tokenize_documents

    plain = tokenize_documents([Document("x", messages=tuple(CHAT))], tok)
    assert plain[:-1] == ids  # (+ the EOS that closes the document)


def test_prepared_chat_data_labels_only_assistant_tokens(tmp_path: Path) -> None:
    import torch

    tok = build_tokenizer()
    rows = [{"messages": [{"role": "user", "content": f"question number {i} about foxes"},
                          {"role": "assistant", "content": f"answer {i}: the quick brown fox"}]}
            for i in range(40)]
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    masked = prepare_data(data, tok, block_size=32, eval_fraction=0.1, mask_prompt=True)
    plain = prepare_data(data, tok, block_size=32, eval_fraction=0.1, mask_prompt=False)
    assert plain.train_mask is None and masked.train_mask is not None
    assert masked.preview.masked and 0 < masked.preview.trained_tokens < masked.preview.tokens
    assert len(masked.train_mask) == len(masked.train) and len(masked.eval_mask) == len(masked.eval)
    x = torch.tensor(masked.train)
    labels = labels_for(x, masked.train_mask)
    keep = torch.tensor(masked.train_mask, dtype=torch.bool)
    assert torch.equal(labels[keep], x[keep]) and bool((labels[~keep] == -100).all())
    learned = tok.decode(x[keep].tolist())
    assert "answer" in learned and "question" not in learned and "about foxes" not in learned
    assert all(any(m) for m in masked.train_mask)  # no block without anything to learn


def test_plain_text_is_never_masked(notes: Path) -> None:
    prepared = prepare_data(notes, build_tokenizer(), block_size=32, mask_prompt=True)
    assert prepared.train_mask is None and not prepared.preview.masked


def test_early_stop_counts_evaluations_without_a_new_best() -> None:
    stop = EarlyStop(TrainArgs(data="x", early_stop_patience=2), {})
    news = [stop.observe(s, loss) for s, loss in [(1, 3.0), (2, 2.5), (3, 2.6), (4, 2.4),
                                                   (5, 2.45), (6, 2.5)]]
    assert news == [True, True, False, True, False, False]
    assert (stop.best_step, stop.best_loss, stop.stopped_at) == (4, 2.4, 6)
    resumed = EarlyStop(TrainArgs(data="x", early_stop_patience=2), stop.as_metrics())
    assert (resumed.best_step, resumed.bad) == (4, 2)
    off = EarlyStop(TrainArgs(data="x", early_stop_patience=0), {})
    assert not any(off.observe(s, 1.0 / s) for s in range(1, 9)) and off.stopped_at is None


def test_early_stopping_keeps_the_best_step_as_the_result(
        notes: Path, tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from slmchat.engine.finetune.checkpoints import trainable_state
    from slmchat.engine.model.loader import load
    from slmchat.engine.model.spec import ModelSpec

    # Scripted held-out losses: before, then steps 1..: best at step 2, worse after.
    losses = iter([5.0, 4.0, 3.0, 3.5, 3.6, 3.7, 3.8, 3.9, 4.0])
    monkeypatch.setattr(job_mod, "evaluate", lambda *a, **k: next(losses))
    snapshots: dict[int, dict] = {}
    real_save = job_mod.save_best

    def save_best(run_dir, step, model, eval_loss):
        snapshots[step] = {k: v.clone() for k, v in trainable_state(model).items()}
        return real_save(run_dir, step, model, eval_loss)

    monkeypatch.setattr(job_mod, "save_best", save_best)
    args = TrainArgs(data=str(notes), model=str(tiny_llama_dir), max_steps=8, block_size=32,
                     batch_size=2, eval_every=1, save_every=100, lr=5e-3, device="cpu",
                     bf16="off", early_stop_patience=3)
    run_dir = prepare_run(args)
    status = run_job(run_dir)
    assert status["state"] == "done", status["message"]
    m = status["metrics"]
    assert (m["stopped_early_at"], m["last_step"], m["result_step"]) == (5, 5, 2)
    assert m["eval_loss_after"] == 3.0 and "kept the best step 2" in status["message"]
    assert sorted(snapshots) == [1, 2]
    assert [p.name for p in (run_dir / "best").iterdir()] == ["step-00000002"]
    result = dict(load(ModelSpec(path=status["out"], device="cpu")).model.named_parameters())
    lora = [n for n in snapshots[2] if "lora_" in n]
    assert lora
    for name in lora:  # the saved adapter holds step 2's weights, not step 1's or step 5's
        assert result[name].detach().equal(snapshots[2][name])
    assert any(not result[n].detach().equal(snapshots[1][n]) for n in lora)


def test_no_early_stopping_keeps_the_last_step(notes: Path, tiny_llama_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    losses = iter([5.0, 4.0, 3.0, 3.5, 3.6, 3.7, 3.8])
    monkeypatch.setattr(job_mod, "evaluate", lambda *a, **k: next(losses))
    args = TrainArgs(data=str(notes), model=str(tiny_llama_dir), max_steps=5, block_size=32,
                     batch_size=2, eval_every=1, save_every=100, device="cpu", bf16="off",
                     early_stop_patience=0)
    status = run_job(prepare_run(args))
    assert status["state"] == "done" and status["step"] == 5
    assert status["metrics"]["eval_loss_after"] == 3.7  # step 5, the last evaluation
    assert "best_step" not in status["metrics"]


def test_a_background_job_leaves_a_core_for_the_chat(notes: Path, tiny_llama_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    from slmchat.engine.devices import physical_cores
    from slmchat.engine.finetune import rundir as runs

    seen: dict = {}

    class FakePopen:
        pid = 4242

        def __init__(self, cmd, **kw) -> None:
            seen.update(kw["env"])

    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    monkeypatch.delenv(runs.RESERVE_ENV, raising=False)
    args = TrainArgs(data=str(notes), model=str(tiny_llama_dir), max_steps=1, block_size=32,
                     batch_size=2, device="cpu", bf16="off")
    runs.spawn(prepare_run(args))
    assert seen[runs.RESERVE_ENV] == "1"
    # The job process honours it (here run in-process with the same environment).
    monkeypatch.delenv("SLMCHAT_THREADS", raising=False)
    monkeypatch.setenv(runs.RESERVE_ENV, "1")
    status = run_job(prepare_run(args))
    assert status["state"] == "done" and status["threads"] == max(1, physical_cores() - 1)
