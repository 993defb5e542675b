"""``slmchat finetune`` in-process: bad input, preview, a run, --model OUT, --resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from slmchat.cli import main
from slmchat.engine.finetune import rundir as runs
from slmchat.paths import runs_dir

TINY = ["--block-size", "32", "--batch-size", "2", "--device", "cpu", "--bf16", "off"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("content,message", [
    (None, "training data not found"),
    (b"", "is empty"),
    (b"\x00\x01\x02binary", "looks binary"),
    (b"\xff\xfe caf\xe9", "not valid UTF-8"),
    (b"Too short.", "too short"),
])
def test_bad_input_is_one_clear_line_and_no_run(tmp_path: Path, tiny_llama_dir: Path,
                                                capsys, content, message) -> None:
    f = tmp_path / "data.txt"
    if content is not None:
        f.write_bytes(content)
    code = main(["finetune", str(f), "--model", str(tiny_llama_dir), *TINY])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("slmchat: error:") and message in err
    assert len(err.strip().splitlines()) == 1
    assert not list(runs_dir().iterdir())  # nothing was started


def test_steps_and_epochs_are_exclusive(notes: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["finetune", str(notes), "--max-steps", "3", "--epochs", "1"])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_preview_prints_numbers_and_estimate(notes: Path, tiny_llama_dir: Path, capsys) -> None:
    code = main(["finetune", str(notes), "--model", str(tiny_llama_dir), "--preview",
                 "--max-steps", "5", *TINY])
    err = capsys.readouterr().err
    assert code == 0
    assert "blocks of 32" in err and "train /" in err and "held-out" in err
    assert "steps      5 = " in err and " epochs (passes over the training blocks" in err
    assert "held out   the end of the text: " in err and "never trained on" in err
    assert "estimate   ~" in err and "train tok/s (measured probe)" in err
    assert not list(runs_dir().iterdir())


def test_preview_of_a_short_text_says_its_held_out_end_is_small(
        tmp_path: Path, tiny_llama_dir: Path, capsys) -> None:
    from tests.tinymodels import CORPUS

    short = tmp_path / "short.txt"
    short.write_text(CORPUS[:600])
    code = main(["finetune", str(short), "--model", str(tiny_llama_dir), "--preview",
                 "--no-probe", "--max-steps", "40"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "(block size chosen for the text's length)" in err and "blocks of 32" in err
    assert "warning    only " in err and "held-out block(s) of 32 tokens" in err
    assert " epochs (passes over the training blocks" in err


def test_run_then_generate_with_model_out(notes: Path, tiny_llama_dir: Path, tmp_path: Path,
                                          capsys) -> None:
    out = tmp_path / "tuned"
    code = main(["finetune", str(notes), "--model", str(tiny_llama_dir), "--max-steps", "3",
                 "--out", str(out), *TINY])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "held-out perplexity" in captured.out and f"saved: {out}" in captured.out
    assert "on the end of the text: " in captured.out  # the figure says what it measures
    assert "3/3" in captured.err  # the progress bar reached the end
    assert (out / "adapter_config.json").is_file()
    code = main(["generate", "--model", str(out), "Paris is", "--max-new-tokens", "3",
                 "-t", "0"])
    assert code == 0, capsys.readouterr().err
    # the output folder exists and is not empty: a second run refuses to overwrite it
    code = main(["finetune", str(notes), "--model", str(tiny_llama_dir), "--out", str(out),
                 *TINY])
    assert code == 2 and "already exists" in capsys.readouterr().err


def test_resume_a_cancelled_run(notes: Path, tiny_llama_dir: Path, capsys) -> None:
    run_dir = runs_dir() / "r1"
    code = main(["finetune", str(notes), "--model", str(tiny_llama_dir), "--max-steps", "4",
                 "--run-dir", str(run_dir), "--prepare-only", *TINY])
    assert code == 0 and capsys.readouterr().out.strip() == str(run_dir)
    assert runs.summarize(run_dir).state == "pending"
    runs.request_cancel(run_dir)  # the job stops before its first step
    assert main(["finetune", "--resume", str(run_dir)]) == 130
    assert "cancelled at step 0/4" in capsys.readouterr().err
    (run_dir / runs.CANCEL).unlink()
    assert main(["finetune", "--resume", str(run_dir)]) == 0
    status = runs.read_status(run_dir)
    assert status["state"] == "done" and status["step"] == 4
    assert main(["finetune", "--resume", str(run_dir)]) == 0
    assert "already finished" in capsys.readouterr().out
    assert main(["finetune", "--list"]) == 0
    assert "done" in capsys.readouterr().out


def test_resume_refuses_a_live_run(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "live"
    run_dir.mkdir()
    (run_dir / runs.ARGS).write_text(json.dumps({"data": "x"}))
    runs.write_status(run_dir, state="running", pid=os.getpid())
    assert main(["finetune", "--resume", str(run_dir)]) == 2
    assert "still running" in capsys.readouterr().err


def test_background_run_and_accelerate_launch(notes: Path, tiny_llama_dir: Path,
                                              tmp_path: Path, capsys) -> None:
    """--background detaches; the same run folder also runs under `accelerate launch`."""
    run_dir = tmp_path / "bg"
    assert main(["finetune", str(notes), "--model", str(tiny_llama_dir), "--max-steps", "2",
                 "--run-dir", str(run_dir), "--background", *TINY]) == 0
    assert "started in the background" in capsys.readouterr().out
    proc_pid = runs.read_status(run_dir)["pid"]
    assert isinstance(proc_pid, int)
    import time

    deadline = time.time() + 120
    while runs.summarize(run_dir).state == "running" and time.time() < deadline:
        time.sleep(0.2)
    assert runs.summarize(run_dir).state == "done", (run_dir / runs.LOG).read_text()[-2000:]

    acc_dir = tmp_path / "acc"
    assert main(["finetune", str(notes), "--model", str(tiny_llama_dir), "--max-steps", "2",
                 "--run-dir", str(acc_dir), "--prepare-only", *TINY]) == 0
    accelerate = Path(sys.executable).parent / "accelerate"
    proc = subprocess.run(
        [str(accelerate), "launch", "--cpu", "--num_processes", "1", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "slmchat.engine.finetune",
         str(acc_dir)],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE"),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert runs.read_status(acc_dir)["state"] == "done"
    assert (acc_dir / "model" / "adapter_model.safetensors").is_file()


def test_reading_progress_is_quiet_for_small_data_and_every_10_percent_otherwise() -> None:
    import io

    from slmchat.commands.finetune import ReadingProgress

    out = io.StringIO()
    show = ReadingProgress(out)
    show(1 << 20, 2 << 20)
    assert out.getvalue() == ""
    big = 100 << 20
    for done in range(0, big + 1, 1 << 20):
        show(done, big)
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 11 and lines[-1].endswith("100 / 100 MB (100%)")
