"""Docked panels beside the chat, the fine-tune status-bar item, the quick model
switcher with its dividers, and the per-conversation model (issue 17)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from textual.widgets import Button, Input

from slmchat.engine.finetune import rundir as runs
from slmchat.engine.model.discovery import ModelEntry
from slmchat.engine.model.spec import ModelSpec
from slmchat.tui.screens.finetune import FinetunePanel, FinetuneScreen
from slmchat.tui.screens.model_switcher import ModelSwitcher, ranked, runtime_hint
from slmchat.tui.screens.models import ModelsPanel
from slmchat.tui.widgets.chat_log import ModelDivider
from slmchat.tui.widgets.finetune_item import FinetuneItem
from slmchat.tui.widgets.offer_bar import OfferBar
from slmchat.tui.widgets.settings_panel import SettingsPanel
from tests.tui.conftest import send, settle
from tests.tui.fakes import FakeEngine

WIDE = (160, 48)
NARROW = (100, 30)

ENTRIES = [
    ModelEntry(name="SmolLM2-135M-Instruct", path="default", source="default",
               format="safetensors", n_params=134_515_008, size_bytes=538_090_408,
               has_chat_template=True, plain_llama=True),
    ModelEntry(name="qwen-0.5b", path="/models/qwen-0.5b", source="models",
               format="safetensors", n_params=494_000_000, size_bytes=988_000_000),
    ModelEntry(name="smol-onnx", path="/models/smol-onnx", source="models",
               format="onnx-int8", size_bytes=150_000_000),
    ModelEntry(name="tiny-llama.gguf", path="/models/tiny-llama.gguf", source="models",
               format="gguf", size_bytes=60_000_000),
]


def entries() -> list[ModelEntry]:
    return list(ENTRIES)


async def test_models_panel_docks_and_the_chat_stays_usable(make_app) -> None:
    engine = FakeEngine(replies=["first answer", "second answer"])
    app = make_app(engine, discover_fn=entries)
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+o")
        await settle(pilot)
        assert app.screen is app.chat  # docked, not a screen of its own
        side = app.chat.side
        assert side.kind == "models" and side.display
        panel = side.query_one(ModelsPanel)
        assert [e.name for e in panel.shown][:2] == ["SmolLM2-135M-Instruct", "qwen-0.5b"]
        assert app.focused is panel.query_one("#filter", Input)
        await send(pilot, "hello there", click=True)
        assert [v.content for v in app.chat.log_view.views()] == ["hello there",
                                                                  "first answer"]
        assert side.kind == "models"  # still open beside the answer
        # Choosing a model in the docked panel loads it and closes the panel.
        panel.query_one("#filter", Input).value = "qwen"
        await pilot.pause()
        panel.action_load()
        await settle(pilot)
        assert engine.loads[-1].path == "/models/qwen-0.5b"
        assert side.kind is None and not side.display
        assert app.focused is app.chat.prompt


async def test_finetune_panel_docks_chat_usable_and_escape_closes(make_app,
                                                                  tmp_path: Path) -> None:
    engine = FakeEngine(replies=["an answer"])
    app = make_app(engine)
    app.chat.runs_root = tmp_path / "runs"
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+t")
        await settle(pilot)
        assert app.chat.side.kind == "finetune"
        assert app.chat.side.query_one(FinetunePanel).docked
        await send(pilot, "question while tuning", click=True)
        assert app.chat.log_view.views()[-1].content == "an answer"
        # Ctrl+T moves the focus between the open panel and the prompt; Esc closes it.
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert app.chat.side.has_focus_within
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert app.focused is app.chat.prompt and app.chat.side.kind == "finetune"
        await pilot.press(*"typed beside the panel")
        assert app.chat.prompt.text == "typed beside the panel"
        await pilot.press("ctrl+t", "escape")
        await settle(pilot)
        assert app.chat.side.kind is None
        assert app.focused is app.chat.prompt


async def test_narrow_terminal_shows_the_panel_full_width(make_app, tmp_path: Path) -> None:
    app = make_app(FakeEngine())
    app.chat.runs_root = tmp_path / "runs"
    async with app.run_test(size=NARROW) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+t")
        await settle(pilot)
        assert isinstance(app.screen, FinetuneScreen)
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is app.chat


async def test_one_side_panel_at_a_time_and_resize_is_remembered(make_app) -> None:
    app = make_app(FakeEngine(), discover_fn=entries)
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+o")
        await settle(pilot)
        side = app.chat.side
        before = side.size.width
        await pilot.press("alt+left", "alt+left")
        await pilot.pause()
        assert side.panel_width == app.ui_state["panel_width"] > 0
        assert side.size.width == before + 8
        await pilot.press("ctrl+s")  # chat settings close the docked panel
        await pilot.pause()
        assert side.kind is None and app.chat.query_one(SettingsPanel).display
        await pilot.press("ctrl+o")  # and the other way round
        await settle(pilot)
        assert side.kind == "models" and not app.chat.query_one(SettingsPanel).display
    # The width comes back in the next session.
    saved = json.loads((Path(os.environ["SLMCHAT_DATA_DIR"]) / "ui-state.json").read_text())
    assert saved["panel_width"] == side.panel_width


async def test_ctrl_s_in_the_docked_fine_tune_panel_opens_settings_not_a_run(
        make_app, tmp_path: Path) -> None:
    """QA: Ctrl+S (the chat's settings key) in the focused fine-tune panel started a run;
    Start is F7 now, and Ctrl+S does what the README says."""
    app = make_app(FakeEngine())
    app.chat.runs_root = tmp_path / "runs"
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+t")
        await settle(pilot)
        assert app.chat.side.kind == "finetune" and app.chat.side.has_focus_within
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.chat.query_one(SettingsPanel).display
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
        texts = [n.message for n in app._notifications]
        assert not any("training file" in m for m in texts), texts


def running_run(root: Path, step: int, total: int = 40) -> Path:
    run = root / "20261129-093000-notes"
    run.mkdir(parents=True, exist_ok=True)
    (run / runs.ARGS).write_text(json.dumps({"data": "/x/notes.md", "model": "default",
                                             "method": "lora"}))
    runs.write_status(run, state="running", pid=os.getpid(), step=step, total_steps=total,
                      started_at=1000.0, metrics={"perplexity_before": 21.6})
    runs.append_progress(run, {"step": step, "loss": 3.0, "total_steps": total,
                               "eta_s": (total - step) * 5.0, "tokens_per_s": 200.0})
    return run


async def test_status_bar_item_follows_a_run_and_its_end_offers_use_and_compare(
        make_app, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    run = running_run(root, 3)
    engine = FakeEngine()
    app = make_app(engine)
    app.chat.runs_root = root
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        app.chat.query_one(FinetuneItem).poll()
        await pilot.pause()
        item = app.chat.query_one(FinetuneItem)
        assert item.display
        assert "3/40" in str(item.render()) and "ETA 3m05s" in str(item.render())
        runs.write_status(run, step=12)
        runs.append_progress(run, {"step": 12, "loss": 2.5, "total_steps": 40, "eta_s": 140.0})
        app.chat.query_one(FinetuneItem).poll()
        await pilot.pause()
        assert "12/40" in str(item.render()) and "ETA 2m20s" in str(item.render())
        # A click opens the panel docked; the item makes way while it is open.
        await pilot.click(FinetuneItem)
        await settle(pilot)
        assert app.chat.side.kind == "finetune" and not item.display
        await pilot.press("escape")
        await settle(pilot)
        assert item.display
        # The run ends: a notification and an offer above the prompt.
        out = tmp_path / "tuned"
        out.mkdir()
        runs.write_status(run, state="done", step=40, out=str(out),
                          metrics={"perplexity_before": 21.6, "perplexity_after": 17.9},
                          data={"files": 1, "tokens": 6000, "eval_blocks": 8,
                                "eval_tokens": 1024, "block_size": 128})
        app.chat.query_one(FinetuneItem).poll()
        await settle(pilot)
        assert not item.display
        offers = app.chat.query_one(OfferBar)
        assert offers.display and offers.kind == "finetune"
        offer = str(offers.query_one("#offer-text").render())
        assert "21.60 → 17.90" in offer and "held-out end of the text, 1,024 tokens" in offer
        labels = [str(b.label) for b in offers.query(Button)]
        assert labels == ["Use model", "Compare", "Dismiss"]
        # "Compare" (the second button) opens the compare view: base left, tuned right.
        offers.query(Button)[1].press()
        await settle(pilot)
        from slmchat.tui.screens.compare import CompareScreen

        assert isinstance(app.screen, CompareScreen)
        app.screen.dismiss(None)
        await settle(pilot)
        assert app.focused is app.chat.prompt
        await app.chat.announce_end(runs.summarize(run))  # offered again; now "Use model"
        await settle(pilot)
        offers.query(Button).first().focus()  # as from the keyboard (Shift+Tab)
        await pilot.pause()
        await pilot.press("enter")
        await settle(pilot)
        assert engine.loads[-1].path == str(out)
        assert not offers.display
        assert app.focused is app.chat.prompt  # QA: typing went nowhere after the button


def test_switcher_ranks_recent_first_and_filters_fuzzily() -> None:
    recent = ["/models/tiny-llama.gguf", "default"]
    assert [e.name for e in ranked(ENTRIES, "", recent)][:2] == [
        "tiny-llama.gguf", "SmolLM2-135M-Instruct"]
    assert [e.name for e in ranked(ENTRIES, "qwn", recent)] == ["qwen-0.5b"]
    assert [e.name for e in ranked(ENTRIES, "onnx", recent)] == ["smol-onnx"]
    assert runtime_hint(ENTRIES[2]) == "onnx"
    from slmchat.engine import runtimes

    gguf_runtime = "transformers" if runtimes.get("llamacpp").unavailable() else "llamacpp"
    assert runtime_hint(ENTRIES[3]) == gguf_runtime
    assert runtime_hint(ENTRIES[0]) == "onnx (auto)"
    assert runtime_hint(ENTRIES[0], ModelSpec(quant="cpu-int8")) == "transformers"
    lora = ModelEntry(name="run/model", path="/runs/x/model", source="run", format="lora",
                      base="default")
    assert runtime_hint(lora, base=ENTRIES[0]) == "onnx (auto)"
    assert runtime_hint(lora) == "transformers"


async def test_quick_switch_swaps_the_model_and_leaves_a_divider(make_app) -> None:
    engine = FakeEngine(replies=["from smol", "from qwen"])
    app = make_app(engine, discover_fn=entries)
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        await pilot.press(*"hi", "enter")
        await settle(pilot)
        conv = app.chat.conv
        assert conv is not None
        await pilot.press("f12")
        await settle(pilot)
        switcher = app.screen
        assert isinstance(switcher, ModelSwitcher)
        rows = [str(o.prompt) for o in switcher.query_one("#switcher-list").options]
        assert rows[0].startswith("SmolLM2-135M-Instruct") and "loaded" in rows[0]
        assert "safetensors · 942.2 MB · transformers" in rows[1]
        await pilot.press(*"qwen", "enter")  # two keys and a filter
        await settle(pilot)
        assert app.screen is app.chat and app.chat.conv.id == conv.id
        assert engine.loads[-1].path == "/models/qwen-0.5b"
        dividers = list(app.chat.log_view.query(ModelDivider))
        assert [d.label for d in dividers] == [engine.info.label]
        assert "model changed to qwen-0.5b" in str(dividers[0].render())
        await pilot.press(*"again", "enter")
        await settle(pilot)
        # Reopening shows the divider between the two replies (stored, not just drawn).
        await app.chat.action_new_chat()
        await app.chat.open_conversation(conv.id)
        await settle(pilot)
        children = [c for c in app.chat.log_view.children
                    if c.has_class("model-divider") or getattr(c, "msg_id", None)]
        kinds = ["divider" if isinstance(c, ModelDivider) else c.content for c in children]
        assert kinds == ["hi", "from smol", "divider", "again", "from qwen"]
        # F12 then Enter with no filter goes back to the previous (recent) model.
        await pilot.press("f12")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert engine.loads[-1].path == "default"


async def test_reopening_a_conversation_offers_its_model_back(make_app) -> None:
    engine = FakeEngine(replies=["a", "b"])
    app = make_app(engine, discover_fn=entries)
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        app.load_model(ModelSpec(path="/models/qwen-0.5b", quant="cpu-int8"))
        await settle(pilot)
        await pilot.press(*"question for qwen", "enter")
        await settle(pilot)
        conv_id = app.chat.conv.id
        assert app.store.get_conversation(conv_id).model["quant"] == "cpu-int8"
        await app.chat.action_new_chat()
        app.load_model(ModelSpec(path="default"))
        await settle(pilot)
        await pilot.press(*"question for smol", "enter")
        await settle(pilot)
        offers = app.chat.query_one(OfferBar)
        assert not offers.display
        await app.chat.open_conversation(conv_id)
        await settle(pilot)
        changes_before = app.chat.store.model_changes(conv_id)
        assert offers.display and offers.kind == "switch-back"
        assert "qwen-0.5b (cpu-int8)" in str(offers.query_one("#offer-text").render())
        assert engine.loads[-1].path == "default"  # offered, not forced
        offers.query(Button).first().focus()
        await pilot.pause()
        await pilot.press("enter")
        await settle(pilot)
        assert engine.loads[-1] == ModelSpec(path="/models/qwen-0.5b", quant="cpu-int8")
        assert not offers.display and app.focused is app.chat.prompt
        # Back to the model that wrote it: no "model changed to" divider after its replies.
        assert app.chat.store.model_changes(conv_id) == changes_before


async def test_shrinking_the_terminal_moves_a_docked_panel_to_full_width(make_app) -> None:
    from slmchat.tui.screens.models import ModelsScreen

    app = make_app(FakeEngine(), discover_fn=entries)
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+o")
        await settle(pilot)
        assert app.chat.side.kind == "models"
        await pilot.resize_terminal(100, 30)
        await settle(pilot)
        assert isinstance(app.screen, ModelsScreen)
        assert app.chat.side.kind is None


def test_a_run_output_is_offered_back_by_its_run_name(tmp_path: Path) -> None:
    """QA: "This conversation last used model" — a run's output folder is named "model"."""
    from slmchat.engine.model.naming import TRAIN_RECORD
    from slmchat.tui.screens.model_switcher import spec_label

    out = tmp_path / "20261129-105315-notes" / "model"
    out.mkdir(parents=True)
    (out / TRAIN_RECORD).write_text(json.dumps({"base_model": "default", "method": "lora"}))
    assert spec_label(ModelSpec(path=str(out))) == "20261129-105315-notes [lora on default]"
    assert spec_label(ModelSpec(path="default")) == "SmolLM2-135M-Instruct"
