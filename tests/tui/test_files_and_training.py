"""Pilot: /attach a folder, ask, see the citations, open one; mark, edit, export replies."""

from __future__ import annotations

import json
from pathlib import Path

from textual.widgets import Button, Static, TextArea

from slmchat.engine.store import curation
from slmchat.tui.screens.edit_reply import EditReply
from slmchat.tui.screens.passage import PassageScreen
from slmchat.tui.widgets.attachments_bar import AttachmentsBar
from slmchat.tui.widgets.citations import Citations
from tests.engine.retrieval.corpus import make_corpus
from tests.tui.conftest import SIZE, send, settle
from tests.tui.fakes import FakeEngine


async def test_attach_ask_cite_and_open_the_passage(make_app, tmp_path: Path) -> None:
    docs = make_corpus(tmp_path / "docs")
    engine = FakeEngine(replies=["Every three weeks [1]."])
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, f"/attach {docs}", paste=True)
        bar = app.chat.query_one(AttachmentsBar)
        assert bar.display and bar.paths == [str(docs.resolve())]
        assert "passages" in str(bar.render()) and "3 skipped" in str(bar.render())
        assert app.chat.log_view.views() == []  # a command, not a message

        await send(pilot, "How often is the compost heap turned?", paste=True)
        prompt = engine.calls[-1].messages[-1].content
        assert "turned every three weeks" in prompt and "[1] notes.md:" in prompt
        assert prompt.endswith("Question: How often is the compost heap turned?")
        conv = app.chat.conv
        stored = app.store.messages(conv.id)
        assert stored[0].content == "How often is the compost heap turned?"  # user's own text
        retrieval = stored[-1].provenance["retrieval"]
        assert retrieval["chunks"] and retrieval["sources"][0]["path"].endswith("notes.md")
        assert app.store.get_conversation(conv.id).settings["attachments"] == [
            str(docs.resolve())]

        reply = app.chat.log_view.views()[-1]
        cites = reply.query_one(Citations)
        first = cites.query(Button).first()
        assert str(first.label).startswith("[1] notes.md:")
        first.press()
        await settle(pilot)
        assert isinstance(app.screen, PassageScreen)
        shown = str(app.screen.query_one("#passage-text", Static).render())
        assert "turned every three weeks" in shown
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, PassageScreen)

        await send(pilot, "/detach", paste=True)
        assert not bar.display and "attachments" not in app.chat.chat_settings
        await send(pilot, "And the tomatoes?", paste=True)
        assert "excerpts" not in engine.calls[-1].messages[-1].content


async def test_reopened_chat_shows_its_files_and_citations(make_app, tmp_path: Path) -> None:
    docs = make_corpus(tmp_path / "docs")
    app = make_app(FakeEngine(replies=["Six bar."]))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, f"/attach {docs / 'manual.html'}", paste=True)
        await send(pilot, "What tyre pressure do road tyres want?", paste=True)
        conv_id = app.chat.conv.id
        await app.chat.action_new_chat()
        await settle(pilot)
        assert not app.chat.query_one(AttachmentsBar).display
        await app.chat.open_conversation(conv_id)
        await settle(pilot)
        assert app.chat.query_one(AttachmentsBar).display
        cites = app.chat.log_view.views()[-1].query_one(Citations)
        assert "manual.html" in str(cites.query(Button).first().label)


async def test_attach_a_missing_path_is_a_notice(make_app, tmp_path: Path) -> None:
    app = make_app(FakeEngine())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, f"/attach {tmp_path / 'nope'}", paste=True)
        assert not app.chat.query_one(AttachmentsBar).display
        assert any("no such file or folder" in n.message for n in app._notifications)


async def test_mark_edit_and_export_replies(make_app, tmp_path: Path) -> None:
    app = make_app(FakeEngine(replies=["Lyon.", "Berlin."]))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, "Capital of France?", paste=True)
        await send(pilot, "Capital of Germany?", paste=True)
        await pilot.press("ctrl+l", "plus")  # select messages: the last reply, good
        await settle(pilot)
        views = app.chat.log_view.views()
        berlin, lyon = views[3], views[1]
        assert curation.rating_of(app.store.get_message(berlin.msg_id)) == "good"
        assert "[marked good]" in str(berlin.query_one(".message-header", Static).render())

        # Select the first reply and edit it into the preferred answer ("e" on a reply).
        await pilot.press("up", "up", "e")
        await settle(pilot)
        assert app.chat.log_view.selected == 1
        assert isinstance(app.screen, EditReply)
        area = app.screen.query_one(TextArea)
        area.load_text("Paris.")
        await pilot.press("ctrl+s")
        await settle(pilot)
        msg = app.store.get_message(lyon.msg_id)
        assert msg.content == "Paris." and curation.original_text(msg) == "Lyon."
        assert lyon.content == "Paris."
        assert "edited" in str(lyon.query_one(".message-header", Static).render())

        await app.chat.action_export_training()
        await settle(pilot)
        exports = list((tmp_path / "slmchat-home" / "data" / "exports").glob("chats-*.jsonl"))
        assert len(exports) == 1
        (row,) = [json.loads(x) for x in exports[0].read_text().splitlines()]
        assert [m["content"] for m in row["messages"] if m["role"] == "assistant"] == [
            "Paris.", "Berlin."]


async def test_exported_training_rows_keep_the_passages_the_model_saw(
        make_app, tmp_path: Path) -> None:
    """Issue 26 #17: a reply grounded on attached files is exported with its question as
    the model saw it (passages in), not the bare question."""
    docs = make_corpus(tmp_path / "docs")
    engine = FakeEngine(replies=["Every three weeks [1]."])
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, f"/attach {docs}", paste=True)
        await send(pilot, "How often is the compost heap turned?", paste=True)
        seen = engine.calls[-1].messages[-1].content
        assert "turned every three weeks" in seen
        await pilot.press("ctrl+l", "plus")
        await settle(pilot)
        await app.chat.action_export_training()
        await settle(pilot)
        exports = list((tmp_path / "slmchat-home" / "data" / "exports").glob("chats-*.jsonl"))
        (row,) = [json.loads(x) for x in exports[0].read_text().splitlines()]
        assert row["messages"][0] == {"role": "user", "content": seen}
        # The chat itself still shows (and stores) the question as typed.
        assert app.store.messages(app.chat.conv.id)[0].content == (
            "How often is the compost heap turned?")


async def test_attach_on_a_full_disk_says_the_files_are_not_saved(small_disk,
                                                                   tmp_path: Path) -> None:
    from slmchat.config import Settings
    from slmchat.engine.store.store import Store
    from slmchat.tui.app import SlmChatApp

    docs = make_corpus(tmp_path / "docs")
    store = Store(small_disk.root / "conversations.db")
    app = SlmChatApp(Settings(), FakeEngine(replies=["ok"]), store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, "hello", paste=True)
        small_disk.fill(0)
        await send(pilot, f"/attach {docs}", paste=True)
        assert app.is_running and app.screen is app.chat
        assert app.chat.query_one(AttachmentsBar).paths == [str(docs.resolve())]
        assert any("disk full" in n.message and "not saved yet" in n.message
                   for n in app._notifications)
        assert "attachments" not in store.get_conversation(app.chat.conv.id).settings
    store.close()
