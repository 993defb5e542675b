"""At 80x24 (issue 26 #15): the footer is not cut mid-word, the compare set-up (F9) fits,
the prompt inspector keeps its prompt text in view, the model table keeps its telling
columns, and notifications leave the prompt and the status bar visible."""

from __future__ import annotations

from textual.widgets import Button, DataTable, Footer
from textual.widgets._footer import FooterKey
from textual.widgets._toast import Toast

from slmchat.tui.screens.compare import CompareSetup
from slmchat.tui.screens.prompt_inspector import PromptInspector
from tests.tui.conftest import settle
from tests.tui.fakes import FakeEngine
from tests.tui.layouts import ENTRIES

SMALL = (80, 24)


def screen_lines(app) -> list[str]:
    return [strip.text for strip in app.screen._compositor.render_strips()]


def inside(region, width: int, height: int) -> bool:
    return region.width > 0 and region.height > 0 and region.x >= 0 and region.y >= 0 \
        and region.right <= width and region.bottom <= height


def assert_footer_whole(app) -> None:
    footer = app.screen.query_one(Footer)
    line = screen_lines(app)[footer.region.y]
    keys = list(footer.query(FooterKey))
    assert keys, line
    for key in keys:
        assert key.description in line, (key.description, line)
    assert any(k.action == "quit" for k in keys), line


async def test_the_footer_leaves_out_whole_keys_instead_of_cutting_them(make_app) -> None:
    app = make_app(FakeEngine(replies=["hello there"]))
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        assert_footer_whole(app)
        await pilot.press(*"hi", "enter")
        await settle(pilot)
        await pilot.press("ctrl+l")  # the log's keys come first: Copy, Edit & resend, ...
        await settle(pilot)
        assert_footer_whole(app)
        assert any(k.action == "copy_selected" for k in app.screen.query(FooterKey))
        await pilot.press("ctrl+f")  # the sidebar's: Rename, Export
        await settle(pilot)
        assert_footer_whole(app)
        await pilot.resize_terminal(160, 30)  # wider: the keys left out come back
        await settle(pilot)
        assert any(k.action == "finetune" for k in app.screen.query(FooterKey))


async def test_compare_setup_fits_at_80x24(make_app) -> None:
    app = make_app(FakeEngine(replies=["hi"]))
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press(*"hello", "enter")
        await settle(pilot)
        await pilot.press("f9")
        await settle(pilot)
        assert isinstance(app.screen, CompareSetup)
        dialog = app.screen.query_one(".compare-setup")
        assert inside(dialog.region, *SMALL), dialog.region
        for button in app.screen.query(Button):
            assert inside(button.region, *SMALL), (button.id, button.region)
        await pilot.resize_terminal(100, 40)  # room enough: bordered fields again
        await settle(pilot)
        assert not app.screen.has_class("-short")


async def test_inspector_keeps_the_prompt_text_in_view_at_80x24(make_app) -> None:
    app = make_app(FakeEngine(replies=["hi there, a longer reply"] * 6))
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        for i in range(6):
            await pilot.press(*f"hello number {i}", "enter")
            await settle(pilot)
        await pilot.press("f8")
        await settle(pilot)
        assert isinstance(app.screen, PromptInspector)
        box = app.screen.query_one("#insp-scroll")
        assert inside(box.region, *SMALL) and box.region.height >= 5, box.region
        assert_footer_whole(app)


async def test_model_table_keeps_format_size_and_params_at_80x24(make_app) -> None:
    from slmchat.tui.screens.models import ModelsScreen

    app = make_app(FakeEngine())
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        app.push_screen(ModelsScreen(engine=app.engine, settings=app.settings,
                                     discover_fn=lambda: list(ENTRIES)))
        await settle(pilot)
        table = app.screen.query_one("#models-table", DataTable)
        header = screen_lines(app)[table.region.y]
        for column in ("Name", "Format", "Size", "Params"):
            assert column in header, header
        rows = "\n".join(screen_lines(app)[table.region.y + 1: table.region.bottom])
        assert "…notes/model" in rows and "4.9M" in rows, rows  # a path keeps its end
    from slmchat.tui.screens.models import fit_name

    assert fit_name("models/smol-cpu-int8", 12) == "…ol-cpu-int8"
    assert fit_name("SmolLM2-135M-Instruct", 12) == "SmolLM2-135…"
    assert fit_name("short", 12) == "short"


async def test_start_up_notices_do_not_cover_the_prompt_or_status_bar(make_app) -> None:
    app = make_app(FakeEngine())
    async with app.run_test(size=SMALL, notifications=True) as pilot:
        await settle(pilot)
        toasts = list(app.screen.query(Toast))
        assert toasts  # "fake-model loaded"
        covered = (app.chat.prompt.region, app.chat.status.region)
        for toast in toasts:
            for region in covered:
                assert not toast.region.overlaps(region), (toast.region, region)
