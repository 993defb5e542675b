"""The fine-tune compare dialog goes through the engine (EngineLike), like the chat."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.app import App
from textual.widgets import Input

from slmchat.tui.messages import CompareText
from slmchat.tui.screens.finetune_compare import CompareScreen
from tests.tinymodels import make_scripted_llama
from tests.tui.fakes import FakeEngine


class Host(App[None]):
    def __init__(self, screen: CompareScreen) -> None:
        super().__init__()
        self.dialog = screen

    def on_mount(self) -> None:
        self.push_screen(self.dialog)


async def ask(app: Host, pilot, prompt: str) -> None:
    app.dialog.query_one("#cmp-prompt", Input).value = prompt
    await pilot.press("enter")
    await app.workers.wait_for_complete()
    await pilot.pause()


@pytest.fixture(scope="module")
def no_template_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Replies " Paris.\\nUser: ok" when nothing stops it at the next transcript turn."""
    return make_scripted_llama(tmp_path_factory.mktemp("scripted"), "Assistant:",
                               " Paris.\nUser: ok")


async def test_model_without_chat_template_stops_at_the_next_user_turn(
        no_template_model: Path) -> None:
    dialog = CompareScreen(str(no_template_model), str(no_template_model))
    app = Host(dialog)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await ask(app, pilot, "Capital?")
        assert dialog.replies == {"base": " Paris.", "tuned": " Paris."}


async def test_each_side_loads_once_and_streams_through_its_engine() -> None:
    engines: list[FakeEngine] = []

    def factory() -> FakeEngine:
        engines.append(FakeEngine(replies=["base one", "base two"] if not engines
                                  else ["tuned one", "tuned two"]))
        return engines[-1]

    dialog = CompareScreen("/models/base", "/runs/r1/model", base_label="Base model",
                           tuned_label="r1 [lora on Base model]", engine_factory=factory)
    seen: list[CompareText] = []
    app = Host(dialog)
    async with app.run_test(size=(100, 30),
                            message_hook=lambda m: isinstance(m, CompareText)
                            and seen.append(m)) as pilot:
        await pilot.pause()
        labels = [str(label.render()) for label in dialog.query(".cmp-label")]
        assert "base: Base model" in labels and "tuned: r1 [lora on Base model]" in labels
        await ask(app, pilot, "hello")
        assert dialog.replies == {"base": "base one", "tuned": "tuned one"}
        await ask(app, pilot, "again")
        assert dialog.replies == {"base": "base two", "tuned": "tuned two"}
    assert [[s.path for s in e.loads] for e in engines] == [["/models/base"],
                                                            ["/runs/r1/model"]]
    assert [[c.messages[-1].content for c in e.calls] for e in engines] == [
        ["hello", "again"], ["hello", "again"]]
    assert all(c.params.temperature == 0 for e in engines for c in e.calls)
    assert {m.which for m in seen} == {"base", "tuned"}
