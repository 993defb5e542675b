"""Pilot tests of the chat flow on a scripted FakeEngine."""

from __future__ import annotations

import asyncio
import json
import threading

from textual.widgets import Button, Input, TextArea

from slmchat.config import Settings
from slmchat.tui.messages import ReplyDelta
from slmchat.tui.widgets.message_view import MessageView
from tests.tui.conftest import SIZE, send, settle
from tests.tui.fakes import FakeEngine


def rows(app) -> list[tuple[str, str, str]]:
    return [(v.role, v.content, v.status) for v in app.chat.log_view.views()]


def stored(app) -> list[tuple[str, str, str]]:
    conv = app.chat.conv
    assert conv is not None
    return [(m.role, m.content, m.status) for m in app.store.messages(conv.id)]


async def test_send_streams_reply_into_markdown_and_saves_provenance(make_app) -> None:
    engine = FakeEngine(replies=["Hello **there**, here is `code` and more words."])
    app = make_app(engine)
    deltas: list[ReplyDelta] = []

    def hook(message: object) -> None:
        if isinstance(message, ReplyDelta):
            deltas.append(message)

    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        await settle(pilot)
        await send(pilot, "hi there")
        assert rows(app) == [
            ("user", "hi there", "done"),
            ("assistant", "Hello **there**, here is `code` and more words.", "done"),
        ]
        # Streamed in pieces, and the Markdown document holds the whole reply.
        unique = list({id(d): d for d in deltas}.values())  # the hook may see one twice
        assert [d.text for d in unique][:3] == ["Hello", " **there**,", " here"]
        assert len(unique) == 8
        view = app.chat.log_view.views()[-1]
        assert view.query_one("Markdown").source == view.content  # type: ignore[attr-defined]
        assert stored(app) == rows(app)
        prov = app.store.messages(app.chat.conv.id)[-1].provenance
        assert prov["model"]["fingerprint"] == "feedc0ffee123456"
        assert prov["model"]["path"] == "default"
        assert prov["sampling"]["temperature"] == 0.2
        assert prov["seed"] == 1234 and prov["new_tokens"] == 8
        assert prov["ttft_s"] == 0.25 and prov["decode_tps"] == 20.0
        status = str(app.chat.status.render_status())
        assert "fake-model" in status and "TTFT 0.25s" in status and "20.0 tok/s" in status
        # The conversation is titled from the first message and listed in the sidebar.
        assert app.chat.conv.title == "Hi there"
        # The engine saw exactly the conversation.
        assert [(m.role, m.content) for m in engine.calls[0].messages] == [("user", "hi there")]


async def test_a_long_load_step_shows_its_progress_in_the_status_bar(make_app) -> None:
    """A model's first ONNX conversion takes a while: the status bar says what it does
    and how far it is, not only "Loading…", and the line goes when the model is ready."""
    gate = threading.Event()
    engine = FakeEngine(load_gate=gate, load_steps=(
        ("converting tiny to ONNX int8 (one time, seconds to a minute)", 0.0),
        ("converting the layers", 0.4)))
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        try:
            for _ in range(50):
                await pilot.pause(0.05)
                if app.chat.status.loading_step is not None \
                        and app.chat.status.loading_step[1] == 0.4:
                    break
            line = str(app.chat.status.render_status(200))
        finally:
            gate.set()
        assert "Loading default model" in line and "converting the layers 40%" in line
        await settle(pilot)
        line = str(app.chat.status.render_status(200))
        assert "converting" not in line and "fake-model" in line


async def test_typing_during_model_load_sends_when_ready(make_app) -> None:
    gate = threading.Event()
    engine = FakeEngine(replies=["Ready now."], load_gate=gate)
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "Loading default model" in str(app.chat.status.render_status())
        await pilot.press(*"early question", "enter")
        await pilot.pause()
        # The user message is committed and shown; the reply waits for the model.
        assert stored(app) == [("user", "early question", "done")]
        assert rows(app)[-1][2] == "waiting"
        assert engine.calls == []
        gate.set()
        await settle(pilot)
        assert rows(app) == [("user", "early question", "done"),
                             ("assistant", "Ready now.", "done")]
        assert "Loading" not in str(app.chat.status.render_status())


async def test_escape_stops_and_keeps_partial_reply(make_app) -> None:
    engine = FakeEngine(replies=["one two three four five six"], pause_after=3)
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press(*"count", "enter")
        await asyncio.to_thread(engine.paused.wait, 5)
        await pilot.pause(0.2)
        assert app.chat.generating
        await pilot.press("escape")
        await settle(pilot)
        assert not app.chat.generating
        assert rows(app)[-1] == ("assistant", "one two three", "stopped")
        assert stored(app)[-1] == ("assistant", "one two three", "stopped")
        view = app.chat.log_view.views()[-1]
        assert "stopped" in str(view.query_one(".message-header").render())
        assert view.has_class("-incomplete")


async def test_context_bar_follows_the_reply_while_it_streams(make_app) -> None:
    """The status bar's context count grows with each token, not only when the reply
    ends (issue 13 item 5)."""
    engine = FakeEngine(replies=["one two three four five six"], pause_after=3)
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        status = app.chat.status
        assert status.context_used == 0
        await pilot.press(*"count", "enter")
        await asyncio.to_thread(engine.paused.wait, 5)
        await pilot.pause(0.2)
        assert app.chat.generating
        prompt_tokens = 1 + 10  # the fake counts words + 10
        seen = status.context_used, str(status.render_status(200))
        engine.resume.set()  # before asserting: a paused worker would hold the app open
        assert seen[0] == prompt_tokens + 3  # three tokens so far
        assert f"{prompt_tokens + 3}/2048" in seen[1]
        assert "20.0 tok/s" in seen[1]
        await settle(pilot)
        assert status.context_used == prompt_tokens + 6


async def test_regenerate_replaces_last_reply(make_app) -> None:
    engine = FakeEngine(replies=["first answer", "second answer"])
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, "question")
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert rows(app) == [("user", "question", "done"),
                             ("assistant", "second answer", "done")]
        assert stored(app) == rows(app)
        assert [(m.role, m.content) for m in engine.calls[1].messages] == [("user", "question")]


async def test_edit_earlier_message_replaces_later_turns(make_app) -> None:
    engine = FakeEngine(replies=["reply A", "reply B", "reply A2"])
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, "first")
        await send(pilot, "second")
        # Select the first message with the keyboard and edit it.
        await pilot.press("ctrl+l")
        await pilot.press("home", "e")
        prompt = app.chat.prompt
        assert prompt.text == "first" and prompt.has_focus
        assert app.query_one("#edit-banner").display
        await pilot.press("backspace", "backspace", "backspace", "backspace", "backspace",
                          *"changed", "enter")
        await settle(pilot)
        assert rows(app) == [("user", "changed", "done"), ("assistant", "reply A2", "done")]
        assert stored(app) == rows(app)
        assert [(m.role, m.content) for m in engine.calls[-1].messages] == [("user", "changed")]
        assert not app.query_one("#edit-banner").display


async def test_continue_a_reply_that_hit_the_length_limit(make_app) -> None:
    engine = FakeEngine(replies=["a b c d e f", " c d"])
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.chat.chat_settings["max_new_tokens"] = 2
        await send(pilot, "letters")
        assert rows(app)[-1] == ("assistant", "a b", "length")
        header = app.chat.log_view.views()[-1].query_one(".message-header")
        assert "Ctrl+G continues" in str(header.render())
        app.chat.chat_settings["max_new_tokens"] = 50
        await pilot.press("ctrl+g")
        await settle(pilot)
        assert rows(app)[-1] == ("assistant", "a b c d", "done")
        assert stored(app)[-1] == ("assistant", "a b c d", "done")
        assert len(app.chat.log_view.views()) == 2  # extended in place, no new message
        call = engine.calls[-1]
        assert call.continue_last
        assert call.messages[-1].role == "assistant" and call.messages[-1].content == "a b"
        prov = app.store.messages(app.chat.conv.id)[-1].provenance
        assert [s["finish_reason"] for s in prov["segments"]] == ["length", "done"]
        assert prov["new_tokens"] == 4


async def test_continue_refused_for_a_finished_reply(make_app) -> None:
    engine = FakeEngine(replies=["done."])
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, "x")
        await pilot.press("ctrl+g")
        await settle(pilot)
        assert len(engine.calls) == 1
        assert any("continued" in n.message for n in app._notifications)


async def test_prompt_box_newline_and_history(make_app) -> None:
    app = make_app(FakeEngine())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("a", "ctrl+j", "b")
        assert app.chat.prompt.text == "a\nb"
        assert app.chat.conv is None  # not sent
        await pilot.press("enter")
        await settle(pilot)
        await send(pilot, "two")
        await pilot.press(*"dra")
        prompt = app.chat.prompt
        await pilot.press("up")
        assert prompt.text == "two"
        await pilot.press("up")
        assert prompt.text == "a\nb" and prompt.cursor_location == (1, 1)
        await pilot.press("up")  # inside a multi-line prompt, Up moves the cursor
        assert prompt.text == "a\nb" and prompt.cursor_location[0] == 0
        await pilot.press("up")  # the oldest prompt stays
        assert prompt.text == "a\nb"
        await pilot.press("down")  # cursor to the last line first
        assert prompt.text == "a\nb" and prompt.cursor_location[0] == 1
        await pilot.press("down")
        assert prompt.text == "two"
        await pilot.press("down")
        assert prompt.text == "dra"  # the draft comes back


async def test_copy_selected_message(make_app) -> None:
    app = make_app(FakeEngine(replies=["copy me"]))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, "q")
        await pilot.press("ctrl+l")
        assert app.chat.log_view.selected_view.content == "copy me"
        await pilot.press("c")
        assert app.clipboard == "copy me"
        await pilot.press("up", "c")
        assert app.clipboard == "q"


async def test_settings_panel_saves_with_conversation_and_is_used(make_app) -> None:
    engine = FakeEngine(replies=["one", "two"])
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, "hello")
        await pilot.press("ctrl+s")
        panel = app.query_one("#settings")
        assert panel.display
        app.query_one("#set-system_prompt", TextArea).load_text("Be brief.")
        app.query_one("#set-temperature", Input).value = "9"
        app.query_one("#settings-save", Button).press()
        await pilot.pause()
        assert app.store.get_conversation(app.chat.conv.id).settings.get("temperature") == 0.2
        assert any("temperature" in n.message for n in app._notifications)
        app.query_one("#set-temperature", Input).value = "0.35"
        app.query_one("#set-seed", Input).value = "7"
        app.query_one("#settings-save", Button).press()
        await pilot.pause()
        saved = app.store.get_conversation(app.chat.conv.id).settings
        assert saved["temperature"] == 0.35 and saved["seed"] == 7
        assert saved["system_prompt"] == "Be brief."
        await send(pilot, "again")
        call = engine.calls[-1]
        assert call.params.temperature == 0.35 and call.params.seed == 7
        assert call.messages[0].role == "system" and call.messages[0].content == "Be brief."
        prov = app.store.messages(app.chat.conv.id)[-1].provenance
        assert prov["sampling"]["temperature"] == 0.35 and prov["sampling"]["seed"] == 7


async def test_settings_take_the_whole_width_below_the_docking_width(make_app) -> None:
    """Issue 17: settings follow the panels' rule: beside the chat from 110 columns, the
    whole width below it; Esc returns to the chat either way."""
    for size, docked in (((100, 30), False), ((160, 48), True)):
        app = make_app(FakeEngine())
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            chat_area = app.chat.query_one("#chat")
            await pilot.press("ctrl+s")
            await pilot.pause()
            panel = app.query_one("#settings")
            assert panel.display and chat_area.display == docked, size
            if docked:
                assert panel.size.width < size[0] // 2 and chat_area.size.width > 60
            else:
                assert panel.outer_size.width == size[0]
            await pilot.press("escape")
            await pilot.pause()
            assert not panel.display and chat_area.display
            assert app.focused is app.chat.prompt


async def test_settings_save_and_escape_give_the_prompt_back(make_app) -> None:
    """Ctrl+S, edit, Tab to Save, Enter: the panel closes and the next message is sent;
    Esc closes the panel from any of its fields."""
    engine = FakeEngine(replies=["one", "two"])
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        panel = app.query_one("#settings")
        await pilot.press("ctrl+s")
        assert panel.display and app.focused.id == "set-system_prompt"
        await pilot.press(*"Be brief.", "tab", *"0.5")  # the field is selected on focus
        while app.focused.id != "settings-save":
            await pilot.press("tab")
        await pilot.press("enter")
        await pilot.pause()
        assert not panel.display and app.focused is app.chat.prompt, [
            n.message for n in app._notifications]
        assert app.chat.chat_settings["temperature"] == 0.5
        await send(pilot, "hello")
        assert engine.calls[-1].messages[-1].content == "hello"
        for field in ("#set-system_prompt", "#set-top_k"):
            await pilot.press("ctrl+s")
            app.query_one(field).focus()
            await pilot.pause()
            await pilot.press("escape")
            await pilot.pause()
            assert not panel.display and app.focused is app.chat.prompt, field


async def test_reply_keeps_the_model_line_breaks(make_app, db_path) -> None:
    """Line breaks in a reply are hard breaks on screen (outside code blocks), both
    while it streams and when a stored conversation is opened again."""
    from textual.widgets._markdown import MarkdownFence, MarkdownParagraph

    poem = "Roses are red,\nviolets are blue.\n\n```\nx = 1\ny = 2\n```"
    app = make_app(FakeEngine(replies=[poem]))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, "a poem")
        conv_id = app.chat.conv.id
        for _ in range(2):
            view = app.chat.log_view.views()[-1]
            paragraphs = [str(p._content) for p in view.query(MarkdownParagraph)]
            assert paragraphs == ["Roses are red,\nviolets are blue."]
            assert len(view.query(MarkdownFence)) == 1
            await app.chat.open_conversation(conv_id)  # from the store this time
            await pilot.pause()


async def test_each_reply_records_its_system_prompt_and_export_shows_changes(
        make_app) -> None:
    from slmchat.engine.store.transcript import to_json, to_markdown

    app = make_app(FakeEngine(replies=["one", "two", "three"]))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, "first")
        app.chat.chat_settings["system_prompt"] = "Be brief."
        await send(pilot, "second")
        await send(pilot, "third")
        conv_id = app.chat.conv.id
        replies = [m for m in app.store.messages(conv_id) if m.role == "assistant"]
        assert [m.provenance["system_prompt"] for m in replies] == ["", "Be brief.",
                                                                   "Be brief."]
        md = to_markdown(app.store, conv_id)
        # Issue 26 #18: at the top, where the model reads it (first in the prompt, before
        # the whole conversation), saying which replies it was given to; it was shown
        # just before the turn where it was set, as if it applied from there.
        assert md.count("Be brief.") == 1
        assert md.index("> **System** (replies 2–3): Be brief.") < md.index(
            "## User\n\nfirst")
        assert "> *(no system prompt for reply 1)*" in md
        assert md.index("*(no system prompt for reply 1)*") < md.index("## User")
        data = json.loads(to_json(app.store, conv_id))
        assert [m["provenance"]["system_prompt"] for m in data["messages"]
                if m["role"] == "assistant"] == ["", "Be brief.", "Be brief."]


async def test_greedy_replies_show_no_seed(make_app) -> None:
    settings = Settings()
    settings.generation.temperature = 0.0
    app = make_app(FakeEngine(replies=["Paris."]), settings=settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, "capital of France?")
        header = str(app.chat.log_view.views()[-1].query_one(".message-header").render())
        assert "greedy" in header and "seed" not in header


async def test_message_view_marks_interrupted_replies(make_app, db_path) -> None:
    from slmchat.engine.store.store import Store

    store = Store(db_path)
    conv = store.create_conversation("old")
    store.add_message(conv.id, "user", "q")
    store.add_message(conv.id, "assistant", "half a rep", status="streaming")
    store.close()
    app = make_app(FakeEngine())  # reopening marks the cut-off reply
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await app.chat.open_conversation(conv.id)
        await pilot.pause()
        view = app.chat.log_view.views()[-1]
        assert isinstance(view, MessageView)
        assert (view.content, view.status) == ("half a rep", "interrupted")


async def test_continue_closes_a_code_fence_opened_before(make_app) -> None:
    from textual.widgets._markdown import MarkdownFence

    engine = FakeEngine(replies=["```python\nx = 1\nprint(x) # out", " 1\ny = 2\n```\n\nDone."])
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.chat.chat_settings["max_new_tokens"] = 5
        await send(pilot, "code")
        assert rows(app)[-1][2] == "length"
        app.chat.chat_settings["max_new_tokens"] = 50
        await app.chat.open_conversation(app.chat.conv.id)  # as after a restart
        await pilot.pause()
        await pilot.press("ctrl+g")
        await settle(pilot)
        view = app.chat.log_view.views()[-1]
        fences = list(view.query(MarkdownFence))
        assert len(fences) == 1
        assert "x = 1" in fences[0].code and "y = 2" in fences[0].code


async def test_a_full_disk_is_a_visible_error_and_keeps_the_typed_text(small_disk) -> None:
    from slmchat.engine.store.store import Store
    from slmchat.tui.app import SlmChatApp

    store = Store(small_disk.root / "conversations.db")
    app = SlmChatApp(Settings(), FakeEngine(replies=["Paris.", "Rome."]), store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, "capital of France")
        first = app.chat.conv
        assert first is not None
        small_disk.fill(0)
        await pilot.press("ctrl+n")
        await settle(pilot)
        await send(pilot, "capital of Italy")
        assert app.is_running and app.screen is app.chat  # no crash screen
        shown = [n.message for n in app._notifications]
        assert any("disk full" in m for m in shown), shown
        assert app.chat.prompt.text == "capital of Italy"  # kept for another try
        assert [v.role for v in app.chat.log_view.views()] == []  # nothing half-sent
        assert app.chat.conv is None
        small_disk.unfill()
        await pilot.press("enter")
        await settle(pilot)
        assert rows(app) == [("user", "capital of Italy", "done"),
                             ("assistant", "Rome.", "done")]
        assert app.chat.prompt.text == ""
    assert [(m.role, m.content) for m in store.messages(first.id)] == [
        ("user", "capital of France"), ("assistant", "Paris.")]
    assert len(store.list_conversations()) == 2
    store.close()


async def test_a_reply_that_cannot_be_saved_says_so_and_keeps_the_message(
        make_app, monkeypatch) -> None:
    import sqlite3

    from slmchat.engine.store.store import StoreWriteError

    app = make_app(FakeEngine(replies=["Paris."]))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        real = app.store.add_message

        def add_message(conv_id, role, content, *args, **kwargs):
            if role == "assistant":  # the disk fills between the two writes
                raise StoreWriteError(app.store.path, sqlite3.OperationalError("disk I/O error"))
            return real(conv_id, role, content, *args, **kwargs)

        monkeypatch.setattr(app.store, "add_message", add_message)
        await send(pilot, "capital of France")
        assert app.is_running and not app.chat.generating
        shown = [n.message for n in app._notifications]
        assert any("could not save" in m and "Ctrl+R" in m for m in shown), shown
        assert stored(app) == [("user", "capital of France", "done")]
        monkeypatch.setattr(app.store, "add_message", real)
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert stored(app) == [("user", "capital of France", "done"),
                               ("assistant", "Paris.", "done")]


async def test_a_model_change_that_cannot_be_saved_keeps_the_new_model(small_disk) -> None:
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.store.store import Store
    from slmchat.tui.app import SlmChatApp

    store = Store(small_disk.root / "conversations.db")
    engine = FakeEngine(replies=["from smol"])
    app = SlmChatApp(Settings(), engine, store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, "hi")
        conv = app.chat.conv
        assert conv is not None
        small_disk.fill(0)
        app.load_model(ModelSpec(path="/models/qwen-0.5b"))
        await settle(pilot)
        assert app.is_running and app.screen is app.chat
        assert engine.info is not None and engine.info.path == "/models/qwen-0.5b"
        assert any("disk full" in n.message and "The model is loaded" in n.message
                   for n in app._notifications)
        assert store.model_changes(conv.id) == []
    store.close()


async def test_a_disk_that_fills_during_a_reply_keeps_it_on_screen_and_says_why(
        small_disk) -> None:
    from slmchat.engine.store.store import Store
    from slmchat.tui.app import SlmChatApp

    store = Store(small_disk.root / "conversations.db")
    engine = FakeEngine(replies=["one two three four five six"], pause_after=3)
    app = SlmChatApp(Settings(), engine, store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press(*"count", "enter")
        await asyncio.to_thread(engine.paused.wait, 5)
        small_disk.fill(0)
        engine.resume.set()
        await settle(pilot)
        assert app.is_running and app.screen is app.chat
        assert rows(app)[-1][1] == "one two three four five six"  # on screen, not lost
        assert any("disk full" in n.message for n in app._notifications)
        assert store.messages(app.chat.conv.id)[0].content == "count"
    store.close()
