"""Thinking models in the app: the reasoning folds into one line above the answer (also
while it streams), a key unfolds it, and thinking on/off is remembered per model."""

from __future__ import annotations

import asyncio
import json

from textual.widgets import Static

from slmchat.paths import data_dir
from slmchat.tui.ui_state import STATE_FILE
from slmchat.tui.widgets.message_view import MessageView
from slmchat.tui.widgets.reasoning_block import ReasoningBlock
from tests.tui.conftest import SIZE, send, settle
from tests.tui.fakes import FakeEngine

THOUGHT = "<think>Let me think about pelicans and their pouches</think> Pelicans fly."


def last_view(app) -> MessageView:
    return app.chat.log_view.views()[-1]


def block_of(view: MessageView) -> ReasoningBlock:
    block = view.reasoning_block
    assert block is not None
    return block


def title(block: ReasoningBlock) -> str:
    return str(block.query_one(".reasoning-title", Static).render())


def body(block: ReasoningBlock) -> Static:
    return block.query_one(".reasoning-text", Static)


async def test_reasoning_is_folded_stored_apart_and_unfolds_with_a_key(make_app) -> None:
    engine = FakeEngine(replies=[THOUGHT])
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, "pelicans")
        view = last_view(app)
        assert view.content == "Pelicans fly."
        assert view.reasoning == "Let me think about pelicans and their pouches"
        block = block_of(view)
        assert title(block) == "▶ Thought for 8 tokens"
        assert not block.expanded and not body(block).display
        stored = app.store.messages(app.chat.conv.id)[-1]
        assert stored.content == "Pelicans fly."
        assert stored.reasoning == view.reasoning
        assert stored.provenance["reasoning_tokens"] == 8
        # The answer alone is the Markdown and what the next prompt carries.
        assert view.query_one("Markdown").source == "Pelicans fly."  # type: ignore[attr-defined]
        await pilot.press("alt+t")
        await pilot.pause()
        assert block.expanded and body(block).display
        assert "pouches" in str(body(block).render())
        assert title(block).startswith("▼")
        await pilot.press("alt+t")
        await pilot.pause()
        assert not block.expanded and not body(block).display
        await send(pilot, "and gulls?")
        assert [m.content for m in engine.calls[-1].messages if m.role == "assistant"] == [
            "Pelicans fly."]


async def test_reasoning_streams_into_the_folded_line(make_app) -> None:
    engine = FakeEngine(replies=[THOUGHT], pause_after=3)
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press(*"pelicans", "enter")
        await asyncio.to_thread(engine.paused.wait, 5)
        await pilot.pause(0.3)  # the view's flush timer runs
        try:
            view = last_view(app)
            block = block_of(view)
            seen = title(block), block.expanded, view.content
            await pilot.press("alt+t")  # unfold while it streams
            await pilot.pause(0.2)
            unfolded = block.expanded, str(body(block).render())
        finally:
            engine.resume.set()
        assert seen == ("▶ Thinking… 3 tokens", False, "")
        assert unfolded == (True, "Let me think")
        await settle(pilot)
        assert title(block) == "▼ Thought for 8 tokens"
        assert "pouches" in str(body(block).render())
        assert view.content == "Pelicans fly."


async def test_a_reply_without_reasoning_has_no_block_and_t_says_so(make_app) -> None:
    app = make_app(FakeEngine(replies=["Just an answer."]))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, "hi")
        assert last_view(app).reasoning_block is None
        await pilot.press("ctrl+l", "t")  # select the last message, toggle its reasoning
        await pilot.pause()
        assert any("no thinking" in n.message for n in app._notifications)


async def test_selected_reply_unfolds_with_t_and_history_shows_it_folded(make_app) -> None:
    app = make_app(FakeEngine(replies=[THOUGHT]))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, "pelicans")
        conv_id = app.chat.conv.id
        await app.chat.open_conversation(conv_id)  # drawn again from the store
        await settle(pilot)
        block = block_of(last_view(app))
        assert title(block) == "▶ Thought for 8 tokens" and not block.expanded
        await pilot.press("ctrl+l", "t")
        await pilot.pause()
        assert block.expanded and "pelicans" in str(body(block).render())


async def test_continuing_a_reply_cut_while_thinking_goes_on_thinking(make_app) -> None:
    engine = FakeEngine(replies=["<think>one two three four", " five</think> Done."])
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.chat.chat_settings["max_new_tokens"] = 2
        await send(pilot, "count")
        view = last_view(app)
        assert (view.status, view.reasoning, view.content) == ("length", "one two", "")
        app.chat.chat_settings["max_new_tokens"] = 50
        await pilot.press("ctrl+g")
        await settle(pilot)
        # The model got its unfinished thought back, open, and the rest went on in it.
        assert engine.calls[-1].messages[-1].content == "<think>\none two"
        assert (view.reasoning, view.content) == ("one two five", "Done.")
        stored = app.store.messages(app.chat.conv.id)[-1]
        assert (stored.reasoning, stored.content, stored.status) == ("one two five", "Done.", "done")


async def test_thinking_toggle_is_remembered_per_model(make_app) -> None:
    engine = FakeEngine(replies=["a", "b", "c"], thinking_switch=True)
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        path = engine.info.path
        assert "think on" in str(app.chat.status.render_status(200))
        await send(pilot, "first")
        assert engine.calls[-1].thinking is None  # never set: the template's default
        await pilot.press("alt+o")
        await pilot.pause()
        assert "think off" in str(app.chat.status.render_status(200))
        assert any("Thinking off" in n.message for n in app._notifications)
        await send(pilot, "second")
        assert engine.calls[-1].thinking is False
        prov = app.store.messages(app.chat.conv.id)[-1].provenance
        assert prov["thinking"] is False
    saved = json.loads((data_dir() / STATE_FILE).read_text())
    assert saved["thinking"] == {path: False}
    # A new start with the same model: still off; the palette turns it back on.
    again = FakeEngine(replies=["d"], thinking_switch=True)
    app = make_app(again)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "think off" in str(app.chat.status.render_status(200))
        titles = [c.title for c in app.get_system_commands(app.chat)]
        assert "Thinking on/off" in titles and "Show or hide thinking" in titles
        app.chat.action_toggle_thinking()
        await send(pilot, "third")
        assert again.calls[-1].thinking is True
    assert json.loads((data_dir() / STATE_FILE).read_text())["thinking"] == {path: True}


async def test_a_model_without_the_switch_ignores_the_toggle(make_app) -> None:
    engine = FakeEngine(replies=["a"])
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "think" not in str(app.chat.status.render_status(200))
        await pilot.press("alt+o")
        await pilot.pause()
        assert any("no thinking switch" in n.message for n in app._notifications)
        await send(pilot, "hi")
        assert engine.calls[-1].thinking is None
        assert "thinking" not in app.ui_state
