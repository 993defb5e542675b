"""Fine-tune jobs end to end on tiny random models, resume after a kill, bad inputs."""

from __future__ import annotations

import errno
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slmchat.engine.finetune import rundir as runs
from slmchat.engine.finetune.args import TrainArgs, lr_at, plan_steps
from slmchat.engine.finetune.job import run_job
from slmchat.engine.finetune.plan import prepare_run
from slmchat.engine.model.loader import load
from slmchat.engine.model.spec import ModelSpec

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_args(notes: Path, model: Path, **kw) -> TrainArgs:
    base = dict(data=str(notes), model=str(model), max_steps=4, block_size=32, batch_size=2,
                save_every=2, max_eval_blocks=8, device="cpu", bf16="off")
    base.update(kw)
    return TrainArgs(**base)  # type: ignore[arg-type]


def test_lr_schedule_warmup_then_cosine_to_floor() -> None:
    a = TrainArgs(data="x", lr=1e-3, warmup_ratio=0.1, min_lr_ratio=0.1)
    lrs = [lr_at(s, 100, a) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4)
    assert lrs[9] == pytest.approx(1e-3)  # end of warmup = peak
    assert all(x >= y for x, y in itertools.pairwise(lrs[9:]))  # decays
    assert lrs[-1] == pytest.approx(1e-4, rel=0.01)


def test_plan_steps() -> None:
    a = TrainArgs(data="x", batch_size=4, grad_accum=2, epochs=2)
    assert plan_steps(a, 100) == (26, 13)  # ceil(ceil(100/4)/2) = 13 per epoch
    a.max_steps = 7
    assert plan_steps(a, 100)[0] == 7


@pytest.mark.parametrize(("blocks", "batch", "accum", "steps"), [
    (1, 4, 1, 60), (3, 4, 2, 5), (10, 4, 1, 7), (8, 4, 1, 4), (9, 2, 3, 11)])
def test_planned_tokens_are_the_tokens_the_loop_trains_on(blocks: int, batch: int,
                                                          accum: int, steps: int) -> None:
    from slmchat.engine.finetune.args import planned_tokens
    from slmchat.engine.finetune.loop import micro_batch

    a = TrainArgs(data="x", batch_size=batch, grad_accum=accum, block_size=32)
    train = [[i] * 32 for i in range(blocks)]
    real = sum(len(b) * 32 for i in range(steps * accum) for b in [micro_batch(a, train, i)])
    assert planned_tokens(a, blocks, steps) == real


def test_estimate_uses_real_tokens_when_blocks_are_fewer_than_the_batch(
        tmp_path: Path, tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One training block, batch 4: a step trains 32 tokens, not 128 (the estimate was
    ~3x too high)."""
    from slmchat.engine.finetune import loop, plan

    notes = tmp_path / "short.txt"
    notes.write_text("Paris is the capital of France. " * 6)
    monkeypatch.setattr(loop, "probe_speed", lambda args, prepared, steps: (32.0, 0.0))
    args = tiny_args(notes, tiny_llama_dir, max_steps=60, batch_size=4)
    pv = plan.preview(args, probe_steps=2)
    assert pv.data["train_blocks"] < 4
    assert pv.tokens_per_step == 32 * pv.data["train_blocks"]
    assert pv.estimated_s == pytest.approx(60 * pv.tokens_per_step / 32.0)
    assert any(line.startswith("warning    only") and "batch of 4" in line
               for line in pv.lines())


def test_invalid_args_are_clear() -> None:
    from slmchat.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="--block-size"):
        TrainArgs(data="x", block_size=4).validate()
    with pytest.raises(InvalidParameterError, match="--max-steps"):
        TrainArgs(data="x", max_steps=0).validate()


def _check_progress_schema(run_dir: Path, total: int) -> list[dict]:
    rows = runs.read_progress(run_dir)
    for row in rows:
        assert tuple(row) == runs.PROGRESS_KEYS
    assert [r["step"] for r in rows] == list(range(total + 1))
    first, last = rows[0], rows[-1]
    assert first["loss"] is None and first["eval_loss"] > 0
    assert first["perplexity"] == pytest.approx(math.exp(first["eval_loss"]))
    for r in rows[1:]:
        assert r["loss"] > 0 and r["lr"] > 0 and r["tokens_per_s"] > 0
        assert r["elapsed_s"] >= 0 and r["eta_s"] >= 0 and r["total_steps"] == total
    assert last["eta_s"] == 0 and last["eval_loss"] is not None
    return rows


def test_lora_run_end_to_end(notes: Path, tiny_llama_dir: Path) -> None:
    run_dir = prepare_run(tiny_args(notes, tiny_llama_dir, lr=5e-3))
    events: list[dict] = []
    status = run_job(run_dir, report=events.append)
    assert status["state"] == "done", status["message"]
    assert status["pid"] == os.getpid() and status["step"] == 4
    _check_progress_schema(run_dir, 4)
    assert any(e["event"] == "progress" for e in events)
    # step-numbered checkpoint (step 4 is the final output, not a checkpoint)
    assert [s for s, _ in runs.checkpoints(run_dir)] == [2]
    sidecar = json.loads((run_dir / "checkpoints/step-00000002/state.json").read_text())
    assert sidecar["step"] == 2 and "python_rng" in sidecar
    assert sidecar["optimizer"]["param_groups"] and sidecar["schedule"]["step"] == 2
    out = Path(status["out"])
    assert out == run_dir / "model" and (out / "adapter_model.safetensors").is_file()
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert Path(cfg["base_model_name_or_path"]) == tiny_llama_dir.resolve()
    card = (out / "README.md").read_text()
    assert runs.read_json(out / "slmchat-train.json")["data"]["sha256"] in card
    m = status["metrics"]
    assert m["perplexity_before"] == pytest.approx(math.exp(m["eval_loss_before"]))
    assert m["eval_loss_after"] < m["eval_loss_before"]  # lr 5e-3 on repetitive text
    lm = load(ModelSpec(path=str(out), device="cpu"))  # what --model OUT does
    assert lm.info.kind == "adapter"
    assert not list(run_dir.glob(".*tmp*")) and not list(out.parent.glob(".model.tmp*"))


def test_full_run_on_gpt2_loads_and_generates(notes: Path, tiny_gpt2_dir: Path,
                                              tmp_path: Path) -> None:
    from slmchat.engine.generation.decode import stream_generate
    from slmchat.engine.generation.sampling import SamplingParams

    out = tmp_path / "tuned"
    run_dir = prepare_run(tiny_args(notes, tiny_gpt2_dir, method="full", max_steps=3,
                                    out=str(out)))
    status = run_job(run_dir)
    assert status["state"] == "done", status["message"]
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    lm = load(ModelSpec(path=str(out), device="cpu"))
    ids = lm.tokenizer("Paris is")["input_ids"]
    chunks = list(stream_generate(lm.model, lm.tokenizer, ids,
                                  SamplingParams(temperature=0, max_new_tokens=3)))
    assert chunks[-1].new_tokens >= 1


def test_cancel_then_resume_reaches_same_step_count(notes: Path, tiny_llama_dir: Path) -> None:
    run_dir = prepare_run(tiny_args(notes, tiny_llama_dir, max_steps=6, save_every=100))

    def cancel_at_3(row: dict) -> None:
        if row.get("event") == "progress" and row.get("step") == 3:
            runs.request_cancel(run_dir)

    status = run_job(run_dir, report=cancel_at_3)
    assert status["state"] == "cancelled" and status["step"] == 3
    assert "--resume" in status["message"]
    assert [s for s, _ in runs.checkpoints(run_dir)] == [3]
    assert not (run_dir / "model").exists()
    runs.cancel_requested(run_dir) and (run_dir / runs.CANCEL).unlink()
    status = run_job(run_dir)
    assert status["state"] == "done" and status["step"] == 6
    _check_progress_schema(run_dir, 6)


def test_resume_after_kill_matches_uninterrupted_run(notes: Path, tiny_llama_dir: Path) -> None:
    from safetensors.torch import load_file

    args = dict(max_steps=24, save_every=2, lora_dropout=0.1)
    run_dir = prepare_run(tiny_args(notes, tiny_llama_dir, **args))
    env = dict(os.environ, SLMCHAT_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.Popen([sys.executable, "-m", "slmchat.engine.finetune", str(run_dir)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not any(s >= 4 for s, _ in runs.checkpoints(run_dir)):
            assert proc.poll() is None, (run_dir / runs.LOG).read_text() if (
                run_dir / runs.LOG).exists() else "train process exited early"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = runs.latest_checkpoint(run_dir)
    assert killed_at is not None and killed_at[0] < 24, "the run finished before the kill"
    assert runs.summarize(run_dir).state == "dead"
    status = run_job(run_dir)
    ref_dir = prepare_run(tiny_args(notes, tiny_llama_dir, **args))
    ref = run_job(ref_dir)
    assert status["state"] == "done" and status["step"] == 24
    _check_progress_schema(run_dir, 24)
    resumed = load_file(str(run_dir / "model/adapter_model.safetensors"))
    straight = load_file(str(ref_dir / "model/adapter_model.safetensors"))
    assert resumed.keys() == straight.keys()
    for key in resumed:  # data order, schedule, optimizer and RNG were all restored
        assert (resumed[key] - straight[key]).abs().max() < 1e-5, key
    assert status["metrics"]["eval_loss_after"] == pytest.approx(
        ref["metrics"]["eval_loss_after"], abs=1e-5)


def test_bad_data_fails_before_model_load(tmp_path: Path, tiny_llama_dir: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    run_dir = prepare_run(tiny_args(empty, tiny_llama_dir))
    status = run_job(run_dir)
    assert status["state"] == "failed" and "is empty" in status["message"]
    assert not (run_dir / "model").exists()


def test_disk_full_while_saving_leaves_no_output(notes: Path, tiny_llama_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import slmchat.engine.finetune.result as output

    def full(*a: object, **k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(output, "_point_adapter_at", full)
    run_dir = prepare_run(tiny_args(notes, tiny_llama_dir, max_steps=2))
    status = run_job(run_dir)
    assert status["state"] == "failed"
    assert status["message"].startswith("disk full while saving the result")
    assert "--resume" in status["message"]
    assert not (run_dir / "model").exists()
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".model")]


def test_adapter_as_base_is_refused(notes: Path, tiny_llama_dir: Path) -> None:
    first = prepare_run(tiny_args(notes, tiny_llama_dir, max_steps=1))
    adapter = run_job(first)["out"]
    status = run_job(prepare_run(tiny_args(notes, Path(adapter))))
    assert status["state"] == "failed" and "is a LoRA adapter" in status["message"]


def test_quantized_base_cannot_be_fully_trained(notes: Path, tiny_llama_dir: Path,
                                                tmp_path: Path) -> None:
    q = load(ModelSpec(path=str(tiny_llama_dir), device="cpu", quant="8bit"))
    q.model.save_pretrained(str(tmp_path / "q8"))
    q.tokenizer.save_pretrained(str(tmp_path / "q8"))
    status = run_job(prepare_run(tiny_args(notes, tmp_path / "q8", method="full")))
    assert status["state"] == "failed"
    assert "is quantized (8bit) and cannot be trained" in status["message"]


def test_qlora_trains_on_cpu(notes: Path, tiny_llama_dir: Path) -> None:
    status = run_job(prepare_run(tiny_args(notes, tiny_llama_dir, method="qlora",
                                           max_steps=2)))
    assert status["state"] == "done", status["message"]
    assert (Path(status["out"]) / "adapter_model.safetensors").is_file()


@pytest.mark.realmodel
def test_real_model_short_run_lowers_heldout_perplexity(notes: Path,
                                                        default_model_dir: Path) -> None:
    args = TrainArgs(data=str(notes), model="default", max_steps=6, block_size=32,
                     batch_size=2, lr=2e-3, max_eval_blocks=4, eval_fraction=0.1,
                     eval_every=6, save_every=6, device="cpu")
    status = run_job(prepare_run(args))
    assert status["state"] == "done", status["message"]
    m = status["metrics"]
    assert m["perplexity_after"] < m["perplexity_before"] * 0.9
    cfg = json.loads((Path(status["out"]) / "adapter_config.json").read_text())
    assert Path(cfg["base_model_name_or_path"]) == default_model_dir.resolve()


def test_resume_skips_a_truncated_newest_checkpoint(notes: Path, tiny_llama_dir: Path) -> None:
    run_dir = prepare_run(tiny_args(notes, tiny_llama_dir, max_steps=6, save_every=2))

    def cancel_at_4(row: dict) -> None:
        if row.get("event") == "progress" and row.get("step") == 4:
            runs.request_cancel(run_dir)

    assert run_job(run_dir, report=cancel_at_4)["state"] == "cancelled"
    assert [s for s, _ in runs.checkpoints(run_dir)] == [2, 4]
    (run_dir / runs.CANCEL).unlink()
    newest = run_dir / "checkpoints" / "step-00000004" / "optimizer.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])  # a full disk or a bad copy
    messages: list[str] = []
    status = run_job(run_dir, report=lambda row: messages.append(str(row.get("message"))))
    assert status["state"] == "done" and status["step"] == 6, status["message"]
    started = [m for m in messages if m.startswith("training from step")]
    assert started and started[0].startswith("training from step 2 (skipped damaged "
                                             "step-00000004: "), messages
    _check_progress_schema(run_dir, 6)
    # Every checkpoint damaged: a clear failure, not a silent start from scratch.
    for _, path in runs.checkpoints(run_dir):
        (path / "weights.safetensors").write_bytes(b"\0" * 16)
    (run_dir / runs.STATUS).unlink()
    status = run_job(run_dir)
    assert status["state"] == "failed"
    assert status["message"].startswith(f"no checkpoint of {run_dir} can be loaded: step-")


@pytest.mark.parametrize("free_kib", [0, 40, 120])  # at the start, at step 1, at step 2
def test_a_run_on_a_full_disk_fails_with_the_reason_and_resumes_later(
        notes: Path, tiny_llama_dir: Path, small_disk, free_kib: int) -> None:
    run_dir = prepare_run(tiny_args(notes, tiny_llama_dir, max_steps=4, save_every=2),
                          run_dir=small_disk.root / "run")
    small_disk.fill(free_kib * 1024)
    status = run_job(run_dir)
    assert status["state"] == "failed", status
    assert status["message"].startswith("disk full while "), status["message"]
    assert f"slmchat finetune --resume {run_dir}" in status["message"]
    assert not (run_dir / "model").exists()
    assert not [p for p in run_dir.rglob(".*tmp*")]  # no half checkpoint or output
    small_disk.unfill()
    status = run_job(run_dir)
    assert status["state"] == "done" and status["step"] == 4
