"""The Japanese UI (ui.language = "ja") and wide characters: a conversation in Japanese,
at ja and at en, 100x30, with Japanese typed in the prompt box and a Japanese title in
the sidebar (look at the SVGs: the columns of wide characters must line up with the
borders), and Pilot checks that the words and keys come from the catalogue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from slmchat.config import Settings
from slmchat.engine.store.store import Store
from slmchat.i18n import set_language, t
from slmchat.tui.widgets import sidebar, status_bar
from tests.tui.conftest import settle
from tests.tui.fakes import FakeEngine

SIZE = (100, 30)
QUESTION = "日本の四季について短く説明してください。"
REPLY = (
    "## 日本の四季\n\n"
    "日本には**四つの季節**があります。\n\n"
    "- 春: 桜が咲きます\n"
    "- 夏: 暑くて湿度が高い\n"
    "- 秋: 紅葉がきれいです\n"
    "- 冬: 北では雪が降ります\n\n"
    "| 季節 | 月 |\n|---|---|\n| 春 | 3〜5月 |\n| 秋 | 9〜11月 |\n\n"
    "```python\nprint(\"こんにちは、世界\")  # 挨拶\n```"
)
TYPED = "次は、東京から京都までの行き方を教えてください。新幹線と在来線の違いも知りたいです。"


@pytest.fixture(autouse=True)
def english_after(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(sidebar, "when", lambda ts, now=None: "11/28 14:03")
    monkeypatch.setattr(status_bar, "process_rss", lambda: 321 * 2**20)  # a fixed picture
    yield
    set_language("en")


def seed(db_path: Path) -> None:
    store = Store(db_path)
    for title, text in (("京都への旅行の計画と持ち物リスト(長いタイトル)", "京都に行きます"),
                        ("Sourdough starter", "How do I feed a sourdough starter?")):
        conv = store.create_conversation(title)
        store.add_message(conv.id, "user", text)
    store.close()


async def japanese_chat(pilot) -> None:
    await settle(pilot)
    app = pilot.app
    app.chat.prompt.insert(QUESTION)
    await pilot.press("enter")
    await settle(pilot)
    app.chat.prompt.insert(TYPED)  # wraps: wide characters in the prompt box
    app.chat.prompt.cursor_blink = False
    for area in app.screen.query("Input, TextArea"):
        area.cursor_blink = False
    app.clear_notifications()
    await pilot.pause()


@pytest.mark.parametrize("language", ["ja", "en"])
def test_japanese_conversation(snap_compare, make_app, db_path: Path, language: str) -> None:
    set_language(language)
    seed(db_path)
    app = make_app(FakeEngine(replies=[REPLY]))
    assert snap_compare(app, terminal_size=SIZE, run_before=japanese_chat)


def test_japanese_inspector(snap_compare, make_app, db_path: Path) -> None:
    set_language("ja")
    app = make_app(FakeEngine(replies=[REPLY]))

    async def run_before(pilot) -> None:
        await japanese_chat(pilot)
        await pilot.press("f8")
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


async def test_words_and_keys_come_from_the_catalogue(make_app) -> None:
    set_language("ja")
    app = make_app(FakeEngine(), settings=Settings(ui={"keys": {"chat.regenerate": "f12"}}))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.chat
        assert screen.query_one("#sidebar").border_title == "会話"
        assert screen.prompt.placeholder == t("prompt.placeholder")
        assert "何でも聞いてください" in str(screen.query_one(".empty-hint").render())
        descriptions = {b.binding.id: b.binding.description
                        for b in screen.active_bindings.values()}
        assert descriptions["chat.new"] == "新規"
        assert descriptions["chat.inspect_prompt"] == "プロンプトを確認"
        # remapped by [ui] keys: the new key, the translated description
        regen = [b for b in screen.active_bindings.values() if b.binding.id == "chat.regenerate"]
        assert regen and regen[0].binding.key == "f12"
        assert regen[0].binding.description == "再生成"


async def test_english_stays_english(make_app) -> None:
    set_language("en")
    app = make_app(FakeEngine())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.chat.query_one("#sidebar").border_title == "Conversations"
        descriptions = {b.binding.id: b.binding.description
                        for b in app.chat.active_bindings.values()}
        assert descriptions["chat.new"] == "New"


async def test_japanese_dialog_and_notice(make_app, db_path: Path) -> None:
    set_language("ja")
    seed(db_path)
    app = make_app(FakeEngine())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+f", "down", "delete")  # the highlighted conversation
        await settle(pilot)
        from textual.widgets import Button, Label

        dialog = app.screen
        assert "完全に削除しますか" in str(dialog.query(Label).first().render())
        assert {str(b.label) for b in dialog.query(Button)} == {"削除", "キャンセル"}
        await pilot.press("y")
        await settle(pilot)
        assert any("を削除しました" in n.message for n in app._notifications)


async def test_japanese_typed_into_the_prompt_box(make_app) -> None:
    """What an input method commits arrives as key events with wide characters: the box
    takes them, the cursor moves by two cells each, Enter sends the text unchanged."""
    set_language("ja")
    engine = FakeEngine(replies=["はい。"])
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press(*"日本語で", "ctrl+j", *"こんにちは")
        box = app.chat.prompt
        assert box.text == "日本語で\nこんにちは"
        assert box.cursor_location == (1, 5)
        assert box.cursor_screen_offset.x - box.content_region.x == 10  # 5 wide chars
        await pilot.press("enter")
        await settle(pilot)
        assert engine.calls[-1].messages[-1].content == "日本語で\nこんにちは"


def test_inspector_rows_cut_wide_text_by_cells() -> None:
    from rich.cells import cell_len

    from slmchat.engine.generation.prompting import ChatMessage, Prompt
    from slmchat.engine.generation.sampling import SamplingParams
    from slmchat.tui.screens.prompt_inspector import InspectTarget, message_rows

    msgs = [ChatMessage("user", "東京" * 50)]
    prompt = Prompt(input_ids=[1, 2, 3], text="", prompt_tokens=3, context_length=2048,
                    dropped_messages=0, truncated=False, stop=(), format="template",
                    kept=tuple(msgs), message_tokens=(3,))
    rows = message_rows(InspectTarget("x", msgs, SamplingParams()), prompt)
    assert cell_len(rows[0][4]) == 70 and rows[0][4].endswith("…")


async def test_the_recipe_for_textuals_own_words() -> None:
    """What app.py does to translate Textual's words (the palette's key, its placeholder,
    its system commands): the recipe in slmchat/i18n's docstring, on a bare App."""
    from collections.abc import Iterable

    from textual.app import App, SystemCommand
    from textual.command import CommandInput, CommandPalette
    from textual.screen import Screen
    from textual.widgets import Footer

    from slmchat.i18n import localize_bindings, localize_system_commands

    class Demo(App[None]):
        def __init__(self) -> None:
            super().__init__()
            localize_bindings(self)

        def compose(self):
            yield Footer()

        def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
            yield from localize_system_commands(super().get_system_commands(screen))

        def action_command_palette(self) -> None:
            if self.use_command_palette and not CommandPalette.is_open(self):
                self.push_screen(CommandPalette(id="--command-palette",
                                                placeholder=t("palette.placeholder")))

    set_language("ja")
    app = Demo()
    async with app.run_test() as pilot:
        palette = [b for _, b in app._bindings if b.action == "command_palette"]
        assert palette[0].description == "パレット"
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"終了", "テーマ"} <= titles
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert app.screen.query_one(CommandInput).placeholder == "コマンドを検索…"


@pytest.fixture
def fixed_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from slmchat.tui.screens import models

    real = models.estimate_memory
    monkeypatch.setattr(models, "estimate_memory", lambda *a, **k: replace(
        real(*a, **k), available_bytes=16 * 2**30))


def test_japanese_chat_at_80x24(snap_compare, make_app, db_path: Path) -> None:
    """The smallest terminal: the status bar (wide words left out whole, least important
    first) and the footer's keys in Japanese."""
    set_language("ja")
    seed(db_path)
    app = make_app(FakeEngine(replies=[REPLY]))
    assert snap_compare(app, terminal_size=(80, 24), run_before=japanese_chat)


@pytest.mark.parametrize("panel", ["models", "finetune"])
def test_japanese_docked_panel(snap_compare, panel: str, tmp_path: Path, fixed_memory: None,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A chat with the status bar and a docked panel at 160x48, all in Japanese."""
    from tests.tui.layouts import DOCKED_STATES

    set_language("ja")
    monkeypatch.chdir(tmp_path)
    app, run_before = DOCKED_STATES[panel](tmp_path / "conversations.db")
    try:
        assert snap_compare(app, terminal_size=(160, 48), run_before=run_before)
    finally:
        app.store.close()


async def test_app_palette_status_bar_and_footer_in_japanese(make_app) -> None:
    from textual.command import CommandInput
    from textual.widgets import Footer

    set_language("ja")
    app = make_app(FakeEngine())
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        line = str(app.chat.status.render_status(160))
        assert "文脈" in line and "オフライン" in line and "ctx" not in line
        keys = {b.binding.id: b.binding.description for b in app.chat.active_bindings.values()}
        assert keys["app.models"] == "モデル" and keys["app.finetune"] == "ファインチューニング"
        assert app.chat.query_one(Footer).display
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"新しいチャット", "モデル", "モデルの切り替え", "終了"} <= titles
        assert not {"New chat", "Models", "Quit"} & titles
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert app.screen.query_one(CommandInput).placeholder == "コマンドを検索…"


def test_model_change_divider_and_settings_labels() -> None:
    """The stored label is data (kept as it is); the words around it follow the
    language. The settings panel's English labels are the engine's own."""
    from slmchat.engine.generation.sampling import SAMPLING_RANGES
    from slmchat.tui.widgets.chat_log import ModelDivider
    from slmchat.tui.widgets.settings_panel import hint_for, label_for

    for r in SAMPLING_RANGES:
        assert label_for(r.name) == r.label
        assert hint_for(r.name) == (f"{r.hint}, {r.describe()}" if r.hint else r.describe())
    assert str(ModelDivider("smol [lora on x]").content) == "── model changed to smol [lora on x] ──"
    set_language("ja")
    assert str(ModelDivider("smol").content) == "── モデルを smol に変更 ──"
    assert label_for("temperature") == "温度"
    assert hint_for("temperature").startswith("0 = グリーディ, ")
