"""Pilot tests of "Compare with…": two columns per prompt, keep one reply, the other
stays as a sibling branch; a second model that does not fit is refused with a reason."""

from __future__ import annotations

from textual.widgets import Button, Input, Select, Static

from slmchat.engine.model.spec import ModelSpec
from slmchat.tui.screens.compare import (
    SAME,
    SAME_INT8,
    CompareChoice,
    CompareScreen,
    CompareSetup,
)
from tests.tui.conftest import SIZE, settle
from tests.tui.fakes import FakeEngine


def no_models() -> list:
    return []


async def open_compare(pilot, app, choice: CompareChoice) -> CompareScreen:
    chat = app.chat
    app.push_screen(CompareScreen(chat.engine, chat.store, chat.conv, chat.chat_settings,
                                  choice), chat.open_compared)
    await settle(pilot)
    assert isinstance(app.screen, CompareScreen)
    return app.screen


def static(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


async def test_a_prompt_streams_into_both_columns_and_keep_right_continues(make_app) -> None:
    engine = FakeEngine(replies=["earlier answer", "left says hi", "next left"],
                        companion_replies=["right says hello", "next right"])
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press(*"earlier question", "enter")
        await settle(pilot)
        screen = await open_compare(pilot, app, CompareChoice(temperature=0.9,
                                                              system_prompt="Be terse."))
        assert engine.companions and "temperature 0.9" in static(screen, "#cmp-right-head")
        assert "system: Be terse." in static(screen, "#cmp-right-head")
        assert "temperature 0.2" in static(screen, "#cmp-left-head")
        await pilot.press(*"greet me", "enter")
        await settle(pilot)
        assert screen.sides["left"].text == "left says hi"
        assert screen.sides["right"].text == "right says hello"
        assert "TTFT 0.25s" in static(screen, "#cmp-left-stats")
        assert "20.0 tok/s" in static(screen, "#cmp-right-stats")
        # Each side saw the conversation so far with its own system prompt and sampling.
        right_call = engine.companions[0].calls[0]
        assert [m.content for m in right_call.messages] == [
            "Be terse.", "earlier question", "earlier answer", "greet me"]
        assert right_call.params.temperature == 0.9
        assert engine.calls[-1].params.temperature == 0.2
        # Both replies are stored under the prompt; neither is chosen yet.
        conv_id = app.chat.conv.id
        left_id, right_id = screen.sides["left"].msg_id, screen.sides["right"].msg_id
        siblings = app.store.siblings(left_id)
        assert [m.id for m in siblings] == [left_id, right_id]
        assert siblings[1].provenance["compare"]["side"] == "right"
        await pilot.press(*"more", "enter")  # refused until one is kept
        await settle(pilot)
        assert len(engine.calls) == 2
        await pilot.press("alt+right")
        await pilot.pause()
        assert screen.kept == "right"
        assert [m.content for m in app.store.messages(conv_id)][-1] == "right says hello"
        # The next prompt continues from the kept reply, on both sides.
        app.screen.query_one("#cmp-prompt").clear()
        await pilot.press(*"and then?", "enter")
        await settle(pilot)
        assert [m.content for m in engine.calls[-1].messages][-3:] == [
            "greet me", "right says hello", "and then?"]
        await pilot.press("alt+left")
        await pilot.press("escape")
        await settle(pilot)
        # Back in the chat: the branch continued from the kept replies, with ‹ n/2 › marks.
        assert app.screen is app.chat
        views = app.chat.log_view.views()
        assert [v.content for v in views] == ["earlier question", "earlier answer", "greet me",
                                              "right says hello", "and then?", "next left"]
        assert [v.branch for v in views][3:] == [(2, 2), None, (1, 2)]


async def test_escape_stops_both_replies(make_app) -> None:
    engine = FakeEngine(replies=["one two three four"], pause_after=1,
                        companion_replies=["uno dos tres cuatro"])
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await open_compare(pilot, app, CompareChoice())
        await pilot.press(*"count", "enter")
        while not engine.paused.is_set():
            await pilot.pause(0.02)
        await pilot.press("escape")
        await settle(pilot)
        assert {s.status for s in screen.sides.values()} == {"stopped"}
        assert app.screen is screen  # the first Esc stops, the second closes
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is app.chat
        # Closed without a choice: the conversation goes on from the left (chat) reply.
        assert [v.content for v in app.chat.log_view.views()] == ["count", "one"]


async def test_a_second_model_that_does_not_fit_is_refused(make_app) -> None:
    engine = FakeEngine(companion_error="a second model would need about 9.0 GB and only "
                                        "1.0 GB is free beside fake-model")
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await open_compare(pilot, app, CompareChoice(ModelSpec(path="/models/big")))
        assert "only 1.0 GB is free" in static(screen, "#cmp-right-stats")
        await pilot.press(*"hello", "enter")
        await settle(pilot)
        assert engine.calls == []
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is app.chat


async def test_setup_dialog_choices(make_app) -> None:
    app = make_app(FakeEngine())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        results: list = []
        app.push_screen(CompareSetup(app.chat.engine.info, no_models), results.append)
        await settle(pilot)
        setup = app.screen
        values = [v for _, v in setup.query_one("#cmp-model", Select)._options]
        assert SAME in values and SAME_INT8 in values
        setup.query_one("#cmp-model", Select).value = SAME_INT8
        setup.query_one("#cmp-temperature", Input).value = "hot"
        setup.query_one("#ok", Button).press()  # not a click: a toast may cover it
        await settle(pilot)
        assert results == [] and any("temperature must be a number" in n.message
                                     for n in app._notifications)
        setup.query_one("#cmp-temperature", Input).value = "0.7"
        setup.query_one("#cmp-system", Input).value = "-"
        setup.query_one("#ok", Button).press()  # not a click: a toast may cover it
        await settle(pilot)
        choice = results[0]
        assert choice.spec is not None and choice.spec.quant == "cpu-int8"
        assert choice.spec.path == "default"  # the loaded model, now as int8
        assert (choice.temperature, choice.system_prompt) == (0.7, "")


async def test_palette_and_key_open_the_setup(make_app) -> None:
    app = make_app(FakeEngine())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "Compare with…" in [c.title for c in app.get_system_commands(app.chat)]
        app.chat.compare_discover = no_models  # type: ignore[method-assign]
        await pilot.press("f9")
        await settle(pilot)
        assert isinstance(app.screen, CompareSetup)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.chat


async def test_interleaved_schedule_gives_the_same_replies(make_app) -> None:
    engine = FakeEngine(replies=["left words here"], companion_replies=["right words"])
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        chat = app.chat
        app.push_screen(CompareScreen(chat.engine, chat.store, chat.conv, chat.chat_settings,
                                      CompareChoice(), schedule="interleaved"))
        await settle(pilot)
        screen = app.screen
        await pilot.press(*"go", "enter")
        await settle(pilot)
        assert (screen.sides["left"].text, screen.sides["right"].text) == (
            "left words here", "right words")
        prov = app.store.get_message(screen.sides["right"].msg_id).provenance
        assert prov["compare"] == {"side": "right", "schedule": "interleaved"}


def test_schedule_follows_the_runtimes_measured_in_bench_compare() -> None:
    from dataclasses import replace

    from slmchat.tui.screens.compare import schedule_for
    from tests.tui.fakes import fake_info

    onnx, torch = replace(fake_info(), runtime="onnx"), fake_info()
    assert schedule_for(onnx, onnx) == "interleaved"
    assert schedule_for(onnx, torch) == "parallel"
    assert schedule_for(torch, torch) == "parallel"
    assert schedule_for(onnx, None) == "parallel"


async def test_two_onnx_sides_interleave_in_the_view(make_app) -> None:
    from dataclasses import replace

    engine = FakeEngine(replies=["left words"], companion_replies=["right words"])
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        engine.loaded_info = replace(engine.loaded_info, runtime="onnx")
        screen = await open_compare(pilot, app, CompareChoice())
        assert screen.schedule == "interleaved"
        assert "interleaved" in static(screen, "#cmp-title")
        await pilot.press(*"go", "enter")
        await settle(pilot)
        prov = app.store.get_message(screen.sides["right"].msg_id).provenance
        assert prov["compare"]["schedule"] == "interleaved"


def test_threads_per_side_shares_the_cores_and_restores(monkeypatch) -> None:
    import os

    from slmchat.tui.screens import compare

    monkeypatch.setattr(compare, "physical_cores", lambda: 8)
    monkeypatch.setenv("SLMCHAT_THREADS", "3")
    with compare.threads_per_side(2):
        assert os.environ["SLMCHAT_THREADS"] == "4"
    assert os.environ["SLMCHAT_THREADS"] == "3"
    monkeypatch.delenv("SLMCHAT_THREADS")
    monkeypatch.setattr(compare, "physical_cores", lambda: 1)
    with compare.threads_per_side(2):
        assert os.environ["SLMCHAT_THREADS"] == "1"
    assert "SLMCHAT_THREADS" not in os.environ


async def test_enter_before_keeping_a_side_says_so_and_keeps_the_prompt(make_app) -> None:
    """Issue 26 #16: Enter on a new prompt did nothing until a side was kept."""
    from slmchat.i18n import t

    engine = FakeEngine(replies=["left says hi", "next left"],
                        companion_replies=["right says hello", "next right"])
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await open_compare(pilot, app, CompareChoice(temperature=0.9))
        await pilot.press(*"greet me", "enter")
        await settle(pilot)
        await pilot.press(*"more", "enter")
        await settle(pilot)
        assert len(engine.calls) == 1  # not sent
        hint = screen.query_one("#cmp-hint", Static)
        assert hint.has_class("-warning")
        assert static(screen, "#cmp-hint") == t("compare.keep_first")
        assert "Not sent" in t("compare.keep_first")
        assert list(app._notifications)[-1].message == t("compare.keep_first")
        assert screen.query_one("#cmp-prompt").text == "more"  # kept to send after
        await pilot.press("alt+left")
        await pilot.pause()
        assert not hint.has_class("-warning")
        await pilot.press("enter")  # the kept prompt goes to both, from the left reply
        await settle(pilot)
        assert [m.content for m in engine.calls[-1].messages][-3:] == [
            "greet me", "left says hi", "more"]
        assert screen.sides["right"].text == "next right"


async def test_a_full_disk_in_compare_says_so_and_keeps_the_question(small_disk) -> None:
    from slmchat.config import Settings
    from slmchat.engine.store.store import Store
    from slmchat.tui.app import SlmChatApp

    store = Store(small_disk.root / "conversations.db")
    engine = FakeEngine(replies=["left says hi"], companion_replies=["right says hello"])
    app = SlmChatApp(Settings(), engine, store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await open_compare(pilot, app, CompareChoice(temperature=0.9))
        small_disk.fill(0)
        await pilot.press(*"greet me", "enter")
        await settle(pilot)
        assert app.is_running and app.screen is screen
        assert any("disk full" in n.message for n in app._notifications)
        assert screen.query_one("#cmp-prompt").text == "greet me"
        assert engine.calls == [] and store.list_conversations() == []  # no half question
        small_disk.unfill()
        await pilot.press("enter")
        await settle(pilot)
        assert screen.sides["left"].text == "left says hi"
        assert screen.sides["right"].text == "right says hello"
    store.close()
