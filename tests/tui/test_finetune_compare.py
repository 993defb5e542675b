"""The fine-tune panel's Compare opens the compare view: base on the left, the tuned
model on the right, greedy, in a conversation of its own that the chat opens after."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Static

from slmchat.engine.model.spec import ModelSpec
from slmchat.engine.session import Engine
from slmchat.tui.screens.compare import CompareScreen, compare_base_and_tuned
from slmchat.tui.screens.finetune import FinetuneScreen
from tests.tinymodels import make_scripted_llama
from tests.tui.conftest import SIZE, settle
from tests.tui.fakes import FakeEngine
from tests.tui.layouts import fake_adapter, fake_done_run


def static(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


async def compare_from_finetune_panel(app, pilot, root: Path):  # type: ignore[no-untyped-def]
    """The fine-tune panel over ``root``, then F6 (Compare): the screen it opens."""
    await settle(pilot)
    app.push_screen(FinetuneScreen(engine=app.engine, settings=app.settings, runs_root=root))
    await settle(pilot)
    await pilot.press("f6")
    await settle(pilot)
    return app.screen


async def test_finetune_compare_opens_the_compare_view_base_left_tuned_right(
        make_app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    root = Path("runs-root")
    fake_done_run(root)  # base "default", output runs/notes/model
    engine = FakeEngine(companion_replies_by_path={
        "default": ["base answer"], "runs/notes/model": ["tuned answer"]})
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        view = await compare_from_finetune_panel(app, pilot, root)
        assert isinstance(view, CompareScreen)
        # Each head: the role, then the model actually loaded on that side.
        assert static(view, "#cmp-left-head").startswith("base · default (fp32, cpu)")
        assert static(view, "#cmp-right-head").startswith("tuned · model ")
        assert "temperature 0.0" in static(view, "#cmp-right-head")
        await pilot.press(*"hello", "enter")
        await settle(pilot)
        assert view.sides["left"].text == "base answer"
        assert view.sides["right"].text == "tuned answer"
        left, right = engine.companions
        assert left.loads == [] and left.info is not None and left.info.path == "default"
        assert right.info is not None and right.info.path == "runs/notes/model"
        assert all(c.params.temperature == 0.0 for e in (left, right) for c in e.calls)
        assert engine.calls == []  # the chat's own model did not answer
        await pilot.press("alt+right")  # keep the tuned reply
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, FinetuneScreen)
        await pilot.press("escape")
        await settle(pilot)
        # The chat now shows the compared conversation, continuing from the kept reply.
        chat = app.chat
        assert chat.conv is not None
        shown = [(v.role, v.content) for v in chat.log_view.views()]
        assert shown == [("user", "hello"), ("assistant", "tuned answer")]
        replies = [m for m in chat.store.all_messages(chat.conv.id) if m.role == "assistant"]
        assert sorted(m.content for m in replies) == ["base answer", "tuned answer"]


async def test_base_and_tuned_sides_show_their_own_fingerprints(
        make_app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 26 #14: both sides showed the base checkpoint's fingerprint (a LoRA model's
    ModelInfo.fingerprint is its base's); the tuned side names its adapter's too, and
    the prompt inspector of each reply names the model that wrote it."""
    from slmchat.tui.screens.prompt_inspector import PromptInspector

    monkeypatch.chdir(tmp_path)
    root = Path("runs-root")
    fake_done_run(root)
    fake_adapter(Path("runs/notes/model"))
    engine = FakeEngine(companion_replies_by_path={
        "default": ["base answer"], "runs/notes/model": ["tuned answer"]})
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        view = await compare_from_finetune_panel(app, pilot, root)
        await pilot.press(*"hello", "enter")
        await settle(pilot)
        left, right = static(view, "#cmp-left-stats"), static(view, "#cmp-right-stats")
        fp_left, fp_right = left[left.index("fp "):], right[right.index("fp "):]
        assert fp_left != fp_right, (left, right)
        tuned = view.sides["right"].prov["model"]
        assert tuned["adapter"] == "runs/notes/model" and tuned["adapter_fingerprint"]
        assert f"lora {tuned['adapter_fingerprint'][:8]}" in fp_right
        assert view.sides["left"].prov["model"]["adapter_fingerprint"] is None
        await pilot.press("alt+right", "escape")
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        # The chat's model is "fake-model"; the kept reply was written by the tuned one.
        await pilot.press("ctrl+l", "end", "i")
        await settle(pilot)
        inspector = app.screen
        assert isinstance(inspector, PromptInspector)
        summary = static(inspector, "#insp-summary")
        model_line = next(ln for ln in summary.splitlines() if ln.startswith("Model"))
        assert "model (fp32, cpu)" in model_line and "fake-model" not in model_line, summary
        assert "Rebuilt with  fake-model (fp32, cpu)" in summary
        assert "not the one that wrote this reply" in summary


@pytest.fixture(scope="module")
def no_template_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Replies " Paris.\\nUser: ok" when nothing stops it at the next transcript turn."""
    return make_scripted_llama(tmp_path_factory.mktemp("scripted"), "Assistant:",
                               " Paris.\nUser: ok")


async def test_real_engines_stop_a_model_without_template_at_the_next_user_turn(
        make_app, no_template_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through real engines both sides keep the prompt's stop strings, as the chat does."""
    monkeypatch.setenv("SLMCHAT_THREADS", "1")
    engine = Engine()
    spec = ModelSpec(path=str(no_template_model), runtime="transformers")
    engine.load(spec)
    app = make_app(engine, load_on_start=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        settings = {**app.chat.chat_settings, "max_new_tokens": 32}  # a 256-token model
        compare_base_and_tuned(app, engine, app.store, settings, spec, spec,
                               ("base", "tuned"))
        await settle(pilot)
        view = app.screen
        assert isinstance(view, CompareScreen)
        await pilot.press(*"Capital?", "enter")
        await settle(pilot)
        assert (view.sides["left"].text, view.sides["right"].text) == (" Paris.", " Paris."), (
            static(view, "#cmp-left-stats"), static(view, "#cmp-right-stats"))
