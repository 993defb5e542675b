"""Tinting accepted draft tokens in the chat ([ui] tint_accepted_drafts, off by default):
a reply whose chunks say some text came from accepted drafts shows as plain text with
those spans tinted; with the setting off, or without speculation, it stays Markdown."""

from __future__ import annotations

from textual.widgets import Checkbox, Markdown, Static

from slmchat.config import Settings, UISettings, load_settings
from slmchat.tui.widgets.message_view import TINT_STYLE, MessageView
from tests.tui.conftest import SIZE, send, settle
from tests.tui.fakes import FakeEngine

REPLY = "The **quick** brown fox jumps over the lazy dog."
# Word pieces (by index) that accepted draft tokens wrote: " **quick** brown", " over the"
ACCEPTED = frozenset({1, 2, 5, 6})


def last_view(app) -> MessageView:
    return app.chat.log_view.views()[-1]


def tinted_body(view: MessageView) -> Static:
    return view.query_one(".message-tinted", Static)


def tinted_spans(view: MessageView) -> list[str]:
    """The text under each tinted span the view shows."""
    content = tinted_body(view).visual
    plain = content.plain  # type: ignore[union-attr]
    return [plain[s.start:s.end] for s in content.spans  # type: ignore[union-attr]
            if s.style == TINT_STYLE]


def backgrounds(widget: Static) -> set[str]:
    """The background colours of the first rendered line of ``widget``."""
    strip = widget.render_line(0)
    return {str(seg.style.bgcolor) for seg in strip if seg.style and seg.text.strip()}


def tinting(on: bool) -> Settings:
    return Settings(ui=UISettings(tint_accepted_drafts=on))


async def test_tinting_off_by_default_keeps_markdown(make_app) -> None:
    assert Settings().ui.tint_accepted_drafts is False
    app = make_app(FakeEngine(replies=[REPLY], accepted_pieces=ACCEPTED), settings=tinting(False))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, "hello")
        view = last_view(app)
        assert view.content == REPLY
        # The spans are known (for turning tinting on later) but the body is Markdown.
        assert [view.content[a:b] for a, b in view.draft_spans] == [" **quick** brown",
                                                                    " over the"]
        assert view.query_one(Markdown).display and not tinted_body(view).display
        assert "quick" in view.query_one(Markdown).source


async def test_tinting_on_shows_plain_text_with_tinted_spans(make_app) -> None:
    engine = FakeEngine(replies=[REPLY, "No drafts here."], accepted_pieces=ACCEPTED)
    app = make_app(engine, settings=tinting(True), persist_settings=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, "hello")
        view = last_view(app)
        assert view.status == "done" and view.tinted
        body = tinted_body(view)
        assert body.display and not view.query_one(Markdown).display
        # Plain text: the Markdown markers stay as written, the accepted text is tinted.
        assert body.visual.plain == REPLY  # type: ignore[union-attr]
        assert tinted_spans(view) == [" **quick** brown", " over the"]
        # The tint is drawn: a tinted word has another background than an untinted one.
        assert len(backgrounds(body)) == 2
        # A reply without speculation stays Markdown, tinting on or not.
        engine.accepted_pieces = frozenset()
        await send(pilot, "again")
        plain = last_view(app)
        assert plain.content == "No drafts here." and not plain.draft_spans
        assert plain.query_one(Markdown).display and not tinted_body(plain).display


async def test_checkbox_turns_tinting_on_and_off_and_keeps_it(make_app) -> None:
    """The settings panel's box applies at once to the replies shown (the spans stay on
    the message, so off and on again restores them, and a theme change keeps them) and
    is saved in settings.toml [ui]."""
    app = make_app(FakeEngine(replies=[REPLY], accepted_pieces=ACCEPTED), settings=tinting(False))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await send(pilot, "hello")
        view = last_view(app)
        assert not tinted_body(view).display
        await pilot.press("ctrl+s")
        await pilot.pause()
        box = app.chat.settings_panel.query_one("#set-tint", Checkbox)
        assert box.value is False
        box.toggle()
        await settle(pilot)
        assert tinted_body(view).display and not view.query_one(Markdown).display
        assert tinted_spans(view) == [" **quick** brown", " over the"]
        assert load_settings()[0].ui.tint_accepted_drafts is True
        dark = backgrounds(tinted_body(view))
        app.theme = "textual-light"
        await settle(pilot)
        assert tinted_spans(view) == [" **quick** brown", " over the"]
        light = backgrounds(tinted_body(view))
        assert len(light) == 2 and light != dark  # the tint follows the theme
        box.toggle()
        await settle(pilot)
        assert view.query_one(Markdown).display and not tinted_body(view).display
        assert view.query_one(Markdown).source == REPLY
        assert load_settings()[0].ui.tint_accepted_drafts is False


async def test_tinting_while_streaming_then_markdown_once_turned_off(make_app) -> None:
    """Turned on mid-reply, the streamed text is tinted from then; turned off, the
    Markdown shows the whole reply (parsed once), and the reply goes on streaming."""
    engine = FakeEngine(replies=[REPLY], accepted_pieces=ACCEPTED, pause_after=4)
    app = make_app(engine, settings=tinting(False), persist_settings=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press(*"hello", "enter")
        assert engine.paused.wait(5)
        await pilot.pause(0.3)
        view = last_view(app)
        await app.chat.log_view.set_tint(True)
        await pilot.pause(0.2)
        assert view.streaming and tinted_body(view).display
        assert tinted_spans(view) == [" **quick** brown"]
        await app.chat.log_view.set_tint(False)
        await pilot.pause(0.2)
        assert view.query_one(Markdown).source == "The **quick** brown fox"
        engine.resume.set()
        await settle(pilot)
        assert view.status == "done" and view.query_one(Markdown).source == REPLY
        assert not tinted_body(view).display
