"""Pilot tests of branches: regenerate and edit keep the old version as a sibling, the
log marks "‹ n/of ›", and keys move between versions."""

from __future__ import annotations

from slmchat.i18n import t
from tests.tui.conftest import SIZE, send, settle
from tests.tui.fakes import FakeEngine


def rows(app) -> list[tuple[str, str]]:
    return [(v.role, v.content) for v in app.chat.log_view.views()]


def marks(app) -> list[tuple[int, int] | None]:
    return [v.branch for v in app.chat.log_view.views()]


def header(app, i: int) -> str:
    return str(app.chat.log_view.views()[i].query_one(".message-header").render())


async def test_regenerate_keeps_the_old_reply_as_a_sibling(make_app) -> None:
    engine = FakeEngine(replies=["first answer", "second answer"])
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, "question")
        assert marks(app) == [None, None]
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert rows(app) == [("user", "question"), ("assistant", "second answer")]
        assert marks(app) == [None, (2, 2)]
        assert "‹ 2/2 ›" in header(app, 1)
        assert len(app.store.all_messages(app.chat.conv.id)) == 3
        await pilot.press("alt+left")
        await settle(pilot)
        assert rows(app) == [("user", "question"), ("assistant", "first answer")]
        assert "‹ 1/2 ›" in header(app, 1)
        await pilot.press("alt+left")  # already the first: nothing changes
        await settle(pilot)
        assert rows(app)[-1] == ("assistant", "first answer")
        await pilot.press("alt+right")
        await settle(pilot)
        assert rows(app)[-1] == ("assistant", "second answer")
        # The next message continues the branch on screen.
        await send(pilot, "thanks")
        assert [m.content for m in app.store.messages(app.chat.conv.id)] == [
            "question", "second answer", "thanks", "OK."]


async def test_edit_makes_a_branch_and_left_right_on_a_selected_message(make_app) -> None:
    engine = FakeEngine(replies=["reply A", "reply B", "reply A2"])
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, "first")
        await send(pilot, "second")
        await pilot.press("ctrl+l", "home", "e")
        assert "new branch" in str(app.query_one("#edit-banner").render())
        await pilot.press(*["backspace"] * 5, *"changed", "enter")
        await settle(pilot)
        assert rows(app) == [("user", "changed"), ("assistant", "reply A2")]
        assert marks(app) == [(2, 2), None]
        # The engine saw only the new branch.
        assert [m.content for m in engine.calls[-1].messages] == ["changed"]
        # Select the edited message and go back to the original with Left.
        await pilot.press("ctrl+l", "home", "left")
        await settle(pilot)
        assert rows(app) == [("user", "first"), ("assistant", "reply A"),
                             ("user", "second"), ("assistant", "reply B")]
        assert marks(app) == [(1, 2), None, None, None]
        assert app.chat.log_view.selected == 0  # still on the message that was switched
        await pilot.press("right")
        await settle(pilot)
        assert rows(app)[0] == ("user", "changed")


async def test_branch_marks_on_reopen_and_messages_without_branches(make_app) -> None:
    engine = FakeEngine(replies=["a", "b"])
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, "q")
        await pilot.press("alt+left")
        await pilot.pause()
        assert any(n.message == t("branches.none") for n in app._notifications)
        await pilot.press("ctrl+r")
        await settle(pilot)
        conv_id = app.chat.conv.id
        await pilot.press("ctrl+n")
        await settle(pilot)
        assert rows(app) == []
        await app.chat.open_conversation(conv_id)
        await settle(pilot)
        assert marks(app) == [None, (2, 2)]


async def test_palette_has_branch_commands(make_app) -> None:
    app = make_app(FakeEngine())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        titles = [c.title for c in app.get_system_commands(app.chat)]
        assert "Previous branch" in titles and "Next branch" in titles


def last_note(app) -> str:
    return list(app._notifications)[-1].message


async def test_alt_arrows_act_on_one_message_and_say_which(make_app) -> None:
    """Issue 26 #11: Alt+Left switched the edited message, then nothing, then a reply
    further down (the last message with versions changed as the branch did)."""
    engine = FakeEngine(replies=["reply A", "reply B", "reply B2", "reply A2"])
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, "first")
        await send(pilot, "second")
        await pilot.press("ctrl+r")  # reply B gets a second version
        await settle(pilot)
        await pilot.press("ctrl+l", "home", "e")  # and "first" is edited
        await pilot.press(*["backspace"] * 5, *"changed", "enter")
        await settle(pilot)
        assert rows(app) == [("user", "changed"), ("assistant", "reply A2")]
        # From the prompt: the message that got a version last, the edited one.
        await pilot.press("alt+left")
        await settle(pilot)
        assert rows(app) == [("user", "first"), ("assistant", "reply A"),
                             ("user", "second"), ("assistant", "reply B2")]
        assert last_note(app) == "Version 1/2 of your message “first”."
        # Again: still that message (at its first version), not reply B2 further down.
        await pilot.press("alt+left")
        await settle(pilot)
        assert rows(app)[-1] == ("assistant", "reply B2")
        assert last_note(app) == "Already the first version of your message “first”."
        await pilot.press("alt+right")
        await settle(pilot)
        assert rows(app)[0] == ("user", "changed")
        assert last_note(app) == "Version 2/2 of your message “changed”."
        await pilot.press("alt+left")
        await settle(pilot)
        # With a message under the cursor, Alt+Left acts on that one.
        await pilot.press("ctrl+l", "end", "alt+left")
        await settle(pilot)
        assert rows(app)[-1] == ("assistant", "reply B")
        assert last_note(app) == "Version 1/2 of the reply “reply B”."
        assert app.chat.log_view.selected == 3  # the cursor stays on it
        await pilot.press("up", "alt+left")  # "second" has one version
        await settle(pilot)
        assert rows(app)[-1] == ("assistant", "reply B")
        assert last_note(app) == "Only one version of your message “second”."
