"""Pilot tests of the fine-tune panel in a minimal host app, with fake run folders."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.app import App
from textual.widgets import Button, Input, ProgressBar, Static

from slmchat.config import Settings
from slmchat.engine.finetune import rundir as runs
from slmchat.engine.model.spec import ModelSpec
from slmchat.tui.screens.finetune import FinetuneScreen
from tests.tinymodels import CORPUS


class Host(App[None]):
    def __init__(self, runs_root: Path, engine: object = None) -> None:
        super().__init__()
        self.runs_root = runs_root
        self.engine = engine
        self.results: list[ModelSpec | None] = []

    def on_mount(self) -> None:
        self.push_screen(FinetuneScreen(engine=self.engine, settings=Settings(),
                                        runs_root=self.runs_root), self.results.append)


DATA = {"files": 1, "tokens": 6000, "block_size": 128, "blocks": 46, "train_blocks": 38,
        "eval_blocks": 8, "eval_tokens": 1024, "eval_warning": None}


def fake_run(root: Path, name: str, state: str, pid: int | None, steps: int, total: int,
             out: Path | None = None, started: float = 1000.0,
             data: dict | None = None) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / runs.ARGS).write_text(json.dumps({"data": "/x/notes.txt", "model": "default",
                                           "method": "lora"}))
    metrics = {"eval_loss_before": math.log(44.03), "perplexity_before": 44.03}
    if state == "done":
        metrics.update(eval_loss_after=math.log(4.94), perplexity_after=4.94)
    runs.write_status(d, state=state, pid=pid, step=steps, total_steps=total,
                      started_at=started, metrics=metrics, out=str(out) if out else None,
                      message=f"step {steps}/{total}", data=data or DATA)
    runs.append_progress(d, {"step": 0, "eval_loss": 3.78, "total_steps": total})
    for s in range(1, steps + 1):
        runs.append_progress(d, {"step": s, "loss": 4.0 - s * 0.1, "lr": 1e-4,
                                 "tokens_per_s": 250.0, "eta_s": (total - s) * 2.0,
                                 "elapsed_s": s * 2.0, "total_steps": total,
                                 "eval_loss": 3.0 if s % 5 == 0 else None})
    return d


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "runs"


async def test_finished_run_shows_perplexity_and_use_dismisses_with_spec(root: Path,
                                                                         tmp_path: Path) -> None:
    out = tmp_path / "tuned"
    out.mkdir()
    fake_run(root, "done-run", "done", 12345, 10, 10, out=out)
    app = Host(root)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        screen = app.screen.panel
        assert isinstance(app.screen, FinetuneScreen)
        assert screen.selected == root / "done-run"
        assert len(screen.train_points) == 10 and len(screen.eval_points) == 3
        result = str(screen.query_one("#ft-result", Static).render())
        assert "before 44.03 → after 4.94" in result and str(out) in result
        assert "held-out end of the text (1,024 tokens, never trained on)" in result
        assert "⚠" not in result
        bar = screen.query_one("#ft-progress", ProgressBar)
        assert bar.total == 10 and bar.progress == 10
        assert "250 tok/s" in str(screen.query_one("#ft-stats", Static).render())
        assert not screen.query_one("#ft-use", Button).disabled
        assert screen.query_one("#ft-cancel", Button).disabled
        await pilot.press("f5")  # the footer's key for "Use model"
        await pilot.pause()
    assert app.results == [ModelSpec(path=str(out))]


async def test_finished_run_on_a_short_text_says_its_figure_is_noisy(root: Path,
                                                                     tmp_path: Path) -> None:
    out = tmp_path / "tuned"
    out.mkdir()
    short = {**DATA, "blocks": 6, "train_blocks": 3, "eval_blocks": 3, "eval_tokens": 96,
             "block_size": 32, "eval_warning": "only 3 held-out block(s)"}
    fake_run(root, "short", "done", None, 10, 10, out=out, data=short)
    app = Host(root)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        result = str(app.screen.query_one("#ft-result", Static).render())
        assert "(96 tokens, never trained on)" in result
        assert "only 3 held-out blocks of 32 tokens (8 wanted)" in result


async def test_finished_run_that_overfit_says_so(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "tuned"
    out.mkdir()
    d = fake_run(root, "overfit", "done", None, 10, 10, out=out)
    runs.append_progress(d, {"step": 10, "eval_loss": 3.78 + 0.4, "total_steps": 10})
    app = Host(root)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        result = str(app.screen.query_one("#ft-result", Static).render())
        assert "overfitting" in result and "3.000 (at step 5) to 4.180" in result


async def test_opens_on_the_data_field_with_the_base_of_an_adapter_as_model(
        root: Path, tmp_path: Path) -> None:
    """After "Use model" the chat runs an adapter; a new run must start from its base."""
    from tests.tui.fakes import FakeEngine, fake_info

    adapter = tmp_path / "run" / "model"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps(
        {"base_model_name_or_path": str(tmp_path / "base")}))
    app = Host(root, engine=FakeEngine(loaded_info=fake_info("run", str(adapter))))
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        assert app.focused is app.screen.query_one("#ft-file", Input)
        assert app.screen.query_one("#ft-model", Input).value == str(tmp_path / "base")


async def test_reattaches_to_running_run_and_follows_new_rows_then_cancels(root: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        fake_run(root, "old", "done", None, 3, 3, started=500.0)
        live = fake_run(root, "live", "running", sleeper.pid, 4, 20, started=100.0)
        app = Host(root)
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.pause()
            screen = app.screen.panel
            assert isinstance(app.screen, FinetuneScreen)
            # the running run wins over the newer finished one
            assert screen.selected == live and screen.summary.state == "running"
            assert "ETA 32s" in str(screen.query_one("#ft-stats", Static).render())
            assert screen.query_one("#ft-use", Button).disabled
            for s in (5, 6):
                runs.append_progress(live, {"step": s, "loss": 3.0, "total_steps": 20,
                                            "eval_loss": 2.5 if s == 6 else None})
            runs.write_status(live, step=6)
            await pilot.pause(1.3)  # one refresh tick
            assert [p[0] for p in screen.train_points][-2:] == [5, 6]
            assert screen.eval_points[-1] == (6, 2.5)
            assert screen.query_one("#ft-progress", ProgressBar).progress == 6
            await pilot.click("#ft-cancel")
            await pilot.pause()
            assert (live / runs.CANCEL).exists()
            sleeper.wait(10)  # SIGTERM reached the "training" process
    finally:
        if sleeper.poll() is None:
            sleeper.kill()


async def test_dead_run_is_flagged_and_resumable(root: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    fake_run(root, "crashed", "running", gone.pid, 2, 10)
    app = Host(root)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        screen = app.screen.panel
        assert screen.summary.state == "dead"
        assert "stopped unexpectedly" in str(screen.query_one("#ft-result", Static).render())
        assert not screen.query_one("#ft-resume", Button).disabled


async def test_bad_file_shows_clear_error_without_starting(root: Path, tmp_path: Path) -> None:
    app = Host(root)
    async with app.run_test(size=(140, 40)) as pilot:
        screen = app.screen.panel
        screen.query_one("#ft-file", Input).value = str(tmp_path / "missing.txt")
        await pilot.click("#ft-start")
        await app.workers.wait_for_complete()
        await pilot.pause()
        text = str(screen.query_one("#ft-preview", Static).render())
        assert "training data not found" in text
        assert not root.exists() or not list(root.iterdir())


async def test_preview_start_watch_and_compare_with_tiny_model(
        root: Path, tmp_path: Path, tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch,
        make_app) -> None:
    """The whole flow on a tiny model: preview, start a real background process, see it
    finish, then compare base and tuned replies side by side."""
    monkeypatch.setenv("SLMCHAT_THREADS", "1")
    notes = tmp_path / "notes.txt"
    notes.write_text(CORPUS)
    from slmchat.engine.session import Engine
    from slmchat.tui.screens.compare import CompareScreen

    app = make_app(Engine(), load_on_start=False)  # the chat has no model: Compare copes
    async with app.run_test(size=(140, 40)) as pilot:
        app.push_screen(FinetuneScreen(engine=app.engine, settings=Settings(),
                                       runs_root=root))
        await pilot.pause()
        screen = app.screen.panel
        for id_, value in (("ft-file", str(notes)), ("ft-model", str(tiny_llama_dir)),
                           ("ft-steps", "3"), ("ft-block", "32"), ("ft-batch", "2")):
            screen.query_one(f"#{id_}", Input).value = value
        await pilot.click("#ft-preview-btn")
        await app.workers.wait_for_complete()
        await pilot.pause()
        preview = str(screen.query_one("#ft-preview", Static).render())
        assert "blocks of 32" in preview and "estimate   ~" in preview
        await pilot.click("#ft-start")
        await app.workers.wait_for_complete()
        deadline = time.time() + 120
        while time.time() < deadline and not (screen.summary and screen.summary.finished):
            await pilot.pause(0.5)
        assert screen.summary.state == "done", screen.summary.message
        assert len(screen.train_points) == 3
        assert "after" in str(screen.query_one("#ft-result", Static).render())
        app.chat.chat_settings["max_new_tokens"] = 16  # the tiny model's context is short
        await pilot.click("#ft-compare")
        await app.workers.wait_for_complete()
        await pilot.pause()
        compare = app.screen
        assert isinstance(compare, CompareScreen)
        await pilot.press(*"Paris is", "enter")
        for _ in range(3):
            await app.workers.wait_for_complete()
            await pilot.pause(0.2)
        sides = compare.sides
        assert sides["left"].status in ("done", "length"), sides["left"].prov
        assert sides["right"].status in ("done", "length"), sides["right"].prov
        assert sides["left"].text and sides["right"].text
        assert sides["left"].engine.info.path == str(tiny_llama_dir)
        right = sides["right"].engine.info  # the run's LoRA output on its base
        assert right.name.startswith(Path(screen.summary.out).parent.name), right
        assert "tuned" in str(compare.query_one("#cmp-right-head", Static).render())


async def test_chart_x_axis_labels_are_whole_steps(root: Path, tmp_path: Path) -> None:
    """Issue 26 #18: a 15-step run's chart was labelled 0.0 3.8 7.5 ..."""
    import re

    out = tmp_path / "tuned"
    out.mkdir()
    fake_run(root, "short-run", "done", None, 15, 15, out=out)
    app = Host(root)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        await pilot.pause(0.2)
        chart = app.screen.panel.query_one("#ft-chart")
        lines = [strip.text for strip in app.screen._compositor.render_strips()]
        plot = lines[chart.region.y:chart.region.bottom]
        axis = next(ln for ln in reversed(plot) if re.search(r"\d", ln)
                    and "step" not in ln)
        assert not re.search(r"\d\.\d", axis), axis
        labels = re.findall(r"\d+", axis[chart.region.x:chart.region.right])
        assert labels == ["0", "5", "10", "15"], axis
    from slmchat.tui.screens.finetune import step_ticks

    assert step_ticks(0, 40) == [0, 10, 20, 30, 40] and step_ticks(1, 3) == [1, 2, 3]


async def test_finished_dpo_run_shows_the_held_out_preference_share(root: Path,
                                                                    tmp_path: Path) -> None:
    out = tmp_path / "tuned"
    out.mkdir()
    d = fake_run(root, "dpo-run", "done", None, 10, 10, out=out)
    runs.write_status(d, metrics={"eval_loss_before": 0.693, "pref_share_before": 0.75,
                                  "eval_loss_after": 0.41, "pref_share_after": 0.9167,
                                  "perplexity_after": None})
    app = Host(root)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        result = str(app.screen.query_one("#ft-result", Static).render())
        assert "held-out preference share: before 75% → after 92%" in result
        assert "perplexity" not in result
