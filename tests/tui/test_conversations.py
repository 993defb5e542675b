"""Pilot tests: sidebar, search, rename, delete, export, restart keeps history."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from textual.widgets import Button, Input, ListView

from slmchat.engine.store.store import Store
from slmchat.tui.screens.dialogs import Confirm, TextPrompt
from slmchat.tui.widgets.sidebar import ConversationItem
from tests.tui.conftest import SIZE, settle
from tests.tui.fakes import FakeEngine


def listed(app) -> list[str]:
    return [item.title for item in app.query(ConversationItem)]


def seed_db(db_path: Path) -> dict[str, int]:
    store = Store(db_path)
    ids = {}
    for title, text in (("Cooking", "how long to boil an egg"),
                        ("Rust help", "explain the borrow checker"),
                        ("Travel", "what to see in Lisbon")):
        conv = store.create_conversation(title)
        store.add_message(conv.id, "user", text)
        store.add_message(conv.id, "assistant", f"answer about {title.lower()}")
        ids[title] = conv.id
    store.close()
    return ids


async def test_restart_keeps_history(make_app) -> None:
    app = make_app(FakeEngine(replies=["Paris."]))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press(*"capital of France?", "enter")
        await settle(pilot)
        await pilot.press("ctrl+q")
    # A second run on the same database file: listed, and opens with every message.
    app2 = make_app(FakeEngine())
    async with app2.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert listed(app2) == ["Capital of France"]
        assert app2.chat.log_view.views() == []  # starts on a fresh chat
        await pilot.click(ConversationItem)
        await pilot.pause()
        assert [(v.role, v.content) for v in app2.chat.log_view.views()] == [
            ("user", "capital of France?"), ("assistant", "Paris.")]
        # Prompt history survives restarts too.
        await pilot.press("up")
        assert app2.chat.prompt.text == "capital of France?"


async def test_search_filters_and_opens(make_app, db_path: Path) -> None:
    ids = seed_db(db_path)
    app = make_app(FakeEngine())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert sorted(listed(app)) == ["Cooking", "Rust help", "Travel"]
        await pilot.press("ctrl+f")
        assert app.focused is app.query_one("#search", Input)
        await pilot.press(*"borrow")
        await pilot.pause()
        assert listed(app) == ["Rust help"]
        snippet = app.query_one(ConversationItem).snippet
        assert "[borrow]" in snippet
        await pilot.press(*" nothingmatches")
        await pilot.pause()
        assert listed(app) == []
        app.query_one("#search", Input).value = "lisb"  # prefix match on the last word
        await pilot.pause()
        assert listed(app) == ["Travel"]
        await pilot.press("enter")  # Enter in the search box opens the first hit
        await pilot.pause()
        assert app.chat.conv is not None and app.chat.conv.id == ids["Travel"]
        assert app.chat.log_view.views()[0].content == "what to see in Lisbon"
        assert app.focused is app.chat.prompt
        # Down from the search box walks the hits; Enter opens one.
        await pilot.press("ctrl+f")
        app.query_one("#search", Input).value = "answer"
        await pilot.pause()
        await pilot.press("down")
        assert isinstance(app.focused, ListView)
        await pilot.press("down")
        chosen = app.query_one("#sidebar").highlighted_id
        assert chosen is not None and chosen == ids[listed(app)[1]]  # the second hit
        await pilot.press("enter")
        await pilot.pause()
        assert app.chat.conv.id == chosen and app.focused is app.chat.prompt


async def test_enter_opens_the_first_hit_even_when_the_open_chat_is_a_hit(
        make_app, db_path: Path) -> None:
    """QA: with the open conversation among the hits, Enter kept it open."""
    ids = seed_db(db_path)
    app = make_app(FakeEngine())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await app.chat.open_conversation(ids["Travel"])
        await settle(pilot)
        await pilot.press("ctrl+f")
        app.query_one("#search", Input).value = "answer"  # every conversation matches
        await pilot.pause()
        hits = listed(app)
        assert len(hits) == 3 and hits[0] != "Travel", hits
        await pilot.press("enter")
        await pilot.pause()
        assert app.chat.conv is not None and app.chat.conv.id == ids[hits[0]]


async def test_sidebar_titles_are_short_and_dated(make_app) -> None:
    from slmchat.tui.generation import title_from
    from slmchat.tui.widgets.sidebar import when

    assert title_from("What is the capital of France?") == "Capital of France"
    assert title_from("hi there") == "Hi there"
    assert title_from("Write a Python function that checks whether a number is prime.") \
        == "Write a Python function that checks…"
    noon = 1_780_000_000.0
    assert when(noon, noon).startswith("today ")
    assert when(noon - 3 * 86400, noon) != when(noon - 2 * 86400, noon)
    app = make_app(FakeEngine(replies=["Paris.", "Paris!"]))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for _ in range(2):
            await pilot.press(*"What is the capital of France?", "enter")
            await settle(pilot)
            await pilot.press("ctrl+n")
        items = list(app.query(ConversationItem))
        assert [i.title for i in items] == ["Capital of France"] * 2
        second = [str(i.query(".conv-snippet").first().render()) for i in items]
        assert all(s.startswith("today ") for s in second)


async def test_rename_and_delete_from_sidebar(make_app, db_path: Path) -> None:
    ids = seed_db(db_path)
    app = make_app(FakeEngine())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await app.chat.open_conversation(ids["Cooking"])
        await pilot.press("f2")
        assert isinstance(app.screen, TextPrompt)
        app.screen.query_one(Input).value = "Eggs"
        await pilot.press("enter")
        await pilot.pause()
        assert app.store.get_conversation(ids["Cooking"]).title == "Eggs"
        assert "Eggs" in listed(app)
        # Delete the open one through the command-palette action, confirm with "y".
        await app.chat.run_action("delete_conversation")
        await pilot.pause()
        assert isinstance(app.screen, Confirm)
        await pilot.press("y")
        await pilot.pause()
        assert [c.title for c in app.store.list_conversations()] == ["Travel", "Rust help"]
        assert app.chat.conv is None and app.chat.log_view.views() == []
        assert "Eggs" not in listed(app)
        # Esc in the dialog keeps the conversation.
        await app.chat.open_conversation(ids["Travel"])
        await app.chat.run_action("delete_conversation")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert len(app.store.list_conversations()) == 2


async def test_export_markdown_and_json(make_app, db_path: Path, tmp_path: Path) -> None:
    app = make_app(FakeEngine(replies=["Use `print`:\n\n```python\nprint('hi')\n```"]))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press(*"how to print", "enter")
        await settle(pilot)
        for name in ("chat.md", "chat.json"):
            await pilot.press("f3")
            assert isinstance(app.screen, TextPrompt)
            field = app.screen.query_one(Input)
            assert field.value.endswith(".md")  # default name, in the current folder
            field.value = str(tmp_path / name)
            await pilot.press("enter")
            await pilot.pause()
        md = (tmp_path / "chat.md").read_text()
        assert md.startswith("# How to print\n")
        assert "## User\n\nhow to print" in md and "```python\nprint('hi')\n```" in md
        assert "fake-model · seed 1234" in md
        data = json.loads((tmp_path / "chat.json").read_text())
        assert [m["role"] for m in data["messages"]] == ["user", "assistant"]
        assert data["messages"][1]["provenance"]["model"]["fingerprint"] == "feedc0ffee123456"
        for name in ("chat.md", "chat.json"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600


async def test_new_chat_and_switching_keeps_each_conversation(make_app) -> None:
    app = make_app(FakeEngine(replies=["r1", "r2"]))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press(*"first chat", "enter")
        await settle(pilot)
        first = app.chat.conv.id
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.chat.conv is None and app.chat.log_view.views() == []
        await pilot.press(*"second chat", "enter")
        await settle(pilot)
        assert app.chat.conv.id != first
        assert sorted(listed(app)) == ["First chat", "Second chat"]
        await app.chat.open_conversation(first)
        await pilot.pause()
        assert [v.content for v in app.chat.log_view.views()] == ["first chat", "r1"]


def seed_branches(db_path: Path) -> tuple[int, int]:
    """A conversation whose first answer was regenerated: the hit ("Germany") is on the
    older branch, early in a long run of turns; the newer, shorter branch is on screen."""
    store = Store(db_path)
    conv = store.create_conversation("Capitals")
    question = store.add_message(conv.id, "user", "name a capital city")
    hit = store.add_message(conv.id, "assistant", "Berlin, the capital of Germany.")
    for i in range(12):
        store.add_message(conv.id, "user", f"and another one, number {i}?")
        store.add_message(conv.id, "assistant", f"Another capital, number {i}.\n\nMore.")
    store.set_active(question.id)
    store.add_message(conv.id, "assistant", "Paris, the capital of France.")
    store.close()
    return conv.id, hit.id


async def test_search_opens_the_branch_of_the_hit_and_scrolls_to_it(
        make_app, db_path: Path) -> None:
    """Issue 26 #10: Ctrl+F "Germany" opened the conversation on the other branch."""
    conv_id, hit_id = seed_branches(db_path)
    app = make_app(FakeEngine())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+f", *"Germany")
        await pilot.pause()
        assert listed(app) == ["Capitals"]
        await pilot.press("enter")
        await settle(pilot)
        assert app.chat.conv.id == conv_id
        log = app.chat.log_view
        view = log.view_for(hit_id)
        assert view is not None, [v.content for v in log.views()]
        assert view.has_class("-hit")
        # Scrolled to it: the hit is inside the visible part of the log, not the end.
        assert log.region.y <= view.region.y < log.region.bottom, (view.region, log.region)
        assert log.scroll_y < log.max_scroll_y
        assert app.focused is app.chat.prompt
        # The next message goes on from the branch on screen; the mark goes away.
        await pilot.press(*"thanks", "enter")
        await settle(pilot)
        assert not log.query(".-hit")
        assert app.store.messages(conv_id)[1].id == hit_id


async def test_each_conversation_keeps_its_own_draft(make_app, db_path: Path) -> None:
    """Issue 26 #13: the text typed in the prompt followed you into another
    conversation, ready to be sent there."""
    ids = seed_db(db_path)
    engine = FakeEngine()
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await app.chat.open_conversation(ids["Travel"])
        await settle(pilot)
        await pilot.press(*"what about Porto")
        await app.chat.open_conversation(ids["Cooking"])
        await settle(pilot)
        assert app.chat.prompt.text == ""  # not the Travel draft
        await pilot.press(*"soft or hard")
        await pilot.press("ctrl+n")
        await settle(pilot)
        assert app.chat.prompt.text == ""
        await pilot.press(*"a new topic")
        await app.chat.open_conversation(ids["Travel"])
        await settle(pilot)
        assert app.chat.prompt.text == "what about Porto"
        await pilot.press("enter")  # sent here, where it was typed
        await settle(pilot)
        assert engine.calls[-1].messages[-1].content == "what about Porto"
        assert app.store.messages(ids["Travel"])[-2].content == "what about Porto"
        await app.chat.open_conversation(ids["Cooking"])
        await settle(pilot)
        assert app.chat.prompt.text == "soft or hard"
        await pilot.press("ctrl+n")
        await settle(pilot)
        assert app.chat.prompt.text == "a new topic"
        await app.chat.open_conversation(ids["Travel"])
        await settle(pilot)
        assert app.chat.prompt.text == ""  # its draft was sent
        # An edit's text stays with the edit: it is not kept as a draft.
        await pilot.press("ctrl+l", "home", "e")
        await settle(pilot)
        assert app.chat.prompt.text == "what to see in Lisbon"
        await app.chat.open_conversation(ids["Rust help"])
        await settle(pilot)
        assert app.chat.prompt.text == "" and app.chat.editing is None
        await app.chat.open_conversation(ids["Travel"])
        await settle(pilot)
        assert app.chat.prompt.text == ""


async def test_rename_and_delete_on_a_full_disk_say_so_and_change_nothing(small_disk) -> None:
    from slmchat.config import Settings
    from slmchat.engine.store.store import Store
    from slmchat.tui.app import SlmChatApp

    db = small_disk.root / "conversations.db"
    ids = seed_db(db)
    store = Store(db)
    app = SlmChatApp(Settings(), FakeEngine(), store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await app.chat.open_conversation(ids["Cooking"])
        small_disk.fill(0)
        await pilot.press("f2")
        app.screen.query_one(Input).value = "Eggs " * 2000  # more than the disk holds
        await pilot.press("enter")
        await pilot.pause()
        await app.chat.run_action("delete_conversation")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert app.is_running and app.screen is app.chat
        shown = [n.message for n in app._notifications]
        assert any("disk full" in m and "Nothing was changed" in m for m in shown), shown
        assert app.store.get_conversation(ids["Cooking"]).title == "Cooking"
        assert len(app.store.list_conversations()) == 3
        assert app.chat.conv is not None and app.chat.conv.id == ids["Cooking"]
        await pilot.press("ctrl+s")  # the settings panel: Save cannot write either
        app.query_one("#set-temperature", Input).value = "0.35"
        app.query_one("#settings-save", Button).press()
        await pilot.pause()
        shown = [n.message for n in app._notifications]
        assert any("disk full" in m and "not saved yet" in m for m in shown), shown
        assert "temperature" not in app.store.get_conversation(ids["Cooking"]).settings
        assert app.query_one("#settings").display  # open, to Save again later
    store.close()
