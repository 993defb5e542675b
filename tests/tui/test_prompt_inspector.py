"""Pilot tests of the prompt inspector on the scripted FakeEngine (and one on the real
default model): the next reply's prompt, a past reply's, tokens, stops, sampling."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Static

from slmchat.engine.generation.prompting import ChatMessage
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.tui.screens.prompt_inspector import (
    SPECIAL_STYLE,
    InspectTarget,
    PromptInspector,
    marked_text,
    message_rows,
    params_from_provenance,
    token_text,
)
from tests.tui.conftest import SIZE, send, settle
from tests.tui.fakes import FakeEngine


def table_rows(screen) -> list[tuple[str, ...]]:
    table = screen.query_one("#insp-messages", DataTable)
    return [tuple(str(c) for c in table.get_row_at(i)) for i in range(table.row_count)]


def text_of(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


async def test_f8_shows_the_next_reply_prompt_with_typed_text(make_app) -> None:
    engine = FakeEngine(replies=["Paris is in France."], cached_tokens=5)
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.chat.chat_settings["system_prompt"] = "Be brief."
        await send(pilot, "Where is Paris?")
        await pilot.press(*"And Berlin?")
        await pilot.press("f8")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, PromptInspector)
        assert screen.target.title == "next reply"
        rows = table_rows(screen)
        assert [r[1] for r in rows] == ["system", "user", "assistant", "user", "(reply starts)"]
        assert rows[3][4] == "And Berlin?" and rows[1][2] == "3"  # "<|user|>Where is Paris?"
        summary = text_of(screen, "#insp-summary")
        assert "fake-model" in summary
        assert "5 of " in summary and "reused from the previous turn" in summary
        assert "temperature=0.2" in summary and "end-of-sequence" in summary
        assert "Includes the message typed in the prompt box" in summary
        body = text_of(screen, "#insp-text")
        assert "<|system|>Be brief.↵" in body and "<|user|>And Berlin?" in body
        await pilot.press("t")
        await pilot.pause()
        assert screen.show_tokens
        assert "Tokens fed to the model" in str(screen.query_one("#insp-scroll").border_title)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.chat
        assert app.chat.prompt.text == "And Berlin?"  # nothing was sent
        assert len(engine.calls) == 1


async def test_i_on_a_past_reply_rebuilds_its_prompt_with_recorded_sampling(make_app) -> None:
    engine = FakeEngine(replies=["one", "two"])
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, "first question")
        app.chat.chat_settings["temperature"] = 0.9  # changed after the first reply
        await send(pilot, "second question")
        await pilot.press("ctrl+l", "home", "down", "i")  # the first reply
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, PromptInspector) and screen.target.title == "this reply"
        assert [r[1] for r in table_rows(screen)] == ["user", "(reply starts)"]
        summary = text_of(screen, "#insp-summary")
        assert "temperature=0.2" in summary  # what it was written with, not today's 0.9
        assert "When written" in summary and "by fake-model" in summary
        await pilot.press("escape")
        await pilot.pause()
        # On your own message: the prompt that ended with it, with today's settings.
        await pilot.press("ctrl+l", "end", "up", "i")
        await settle(pilot)
        screen = app.screen
        assert screen.target.title == "the reply to this message"
        assert [r[4] for r in table_rows(screen)][-2] == "second question"
        assert "temperature=0.9" in text_of(screen, "#insp-summary")


async def test_inspect_needs_a_model_and_a_message(make_app) -> None:
    app = make_app(FakeEngine(), load_on_start=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press(*"hello", "f8")
        await pilot.pause()
        assert app.screen is app.chat
        assert any("No model is loaded" in n.message for n in app._notifications)
    app = make_app(FakeEngine())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f8")
        await pilot.pause()
        assert app.screen is app.chat
        assert any("Nothing to inspect" in n.message for n in app._notifications)


async def test_palette_lists_the_inspector(make_app) -> None:
    app = make_app(FakeEngine())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        titles = [c.title for c in app.get_system_commands(app.chat)]
        assert "Inspect prompt" in titles


def test_rendering_helpers_mark_special_tokens_and_dropped_turns() -> None:
    text = marked_text("<|im_start|>user\nhi<|im_end|>", ("<|im_start|>", "<|im_end|>"))
    assert text.plain == "<|im_start|>user↵\nhi<|im_end|>"
    marked = {text.plain[s.start:s.end] for s in text.spans if s.style == SPECIAL_STYLE}
    assert marked == {"<|im_start|>", "<|im_end|>"}
    tokens = token_text(("<|im_start|>", "user", "\n"), ("<|im_start|>",))
    assert tokens.plain == "<|im_start|>user↵\n" and len(tokens.spans) == 3
    engine = FakeEngine()
    msgs = [ChatMessage("user", "old"), ChatMessage("assistant", "older reply"),
            ChatMessage("user", "new")]
    prompt = engine.preview_prompt(msgs[2:], SamplingParams(), detail=True)
    from dataclasses import replace

    prompt = replace(prompt, dropped_messages=2)
    rows = message_rows(InspectTarget("x", msgs, SamplingParams()), prompt)
    assert [(r[1], r[3]) for r in rows[:3]] == [
        ("user", "dropped"), ("assistant", "dropped"), ("user", "kept")]


def test_params_from_provenance_ignores_unknown_keys() -> None:
    fallback = SamplingParams(temperature=0.5, max_new_tokens=99)
    p = params_from_provenance({"sampling": {"temperature": 0.0, "future_knob": 1}}, fallback)
    assert p.temperature == 0.0 and p.max_new_tokens == 99


def test_real_default_model_prompt_detail(default_engine, tmp_path: Path) -> None:
    """SmolLM2's template adds its own system prompt when there is none: the first
    message's share shows it, and every token is accounted for."""
    params = SamplingParams(max_new_tokens=64)
    prompt = default_engine.preview_prompt([ChatMessage("user", "Hello there")], params,
                                           detail=True)
    assert prompt.format == "template"
    assert "<|im_start|>" in prompt.special_tokens and "<|im_end|>" in prompt.special_tokens
    assert "SmolLM" in prompt.text  # the template's default system prompt
    assert prompt.message_tokens[0] > 12  # "Hello there" alone is 2 tokens
    assert abs(sum(prompt.message_tokens) + prompt.generation_prompt_tokens
               - prompt.prompt_tokens) <= 1
    assert "".join(prompt.pieces) == prompt.text
