"""A remote model in the app: one conversation goes from a local model to a remote one
and back (history, dividers and each reply's provenance stay right), the switcher lists
remote models as ``NAME: model``, a model off this machine gets a one-time notice and a
status bar mark, and the prompt inspector says the server applies its own template."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from slmchat.config import RemoteSettings, Settings
from slmchat.engine.generation.prompting import ChatMessage, Prompt
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model import remote
from slmchat.engine.model.spec import ModelInfo, ModelSpec, Progress
from slmchat.engine.session import Engine
from slmchat.tui.screens.model_switcher import ModelSwitcher
from slmchat.tui.screens.prompt_inspector import InspectTarget, summary
from tests.remotekit import OK_PIECES, stub_server
from tests.tui.conftest import SIZE, settle
from tests.tui.fakes import FakeEngine, fake_info

KEY = "sk-tui-5c0ffee5c0ffee"


@pytest.fixture(autouse=True)
def _no_profiles() -> Iterator[None]:
    yield
    remote.use_profiles([])


def _notes(app) -> list[str]:
    return [n.message for n in app._notifications]


async def _say(pilot, text: str) -> None:
    await pilot.press(*text, "enter")
    await settle(pilot)


async def test_one_conversation_local_then_remote_then_local(
        make_app, db_path: Path, tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch,
        isolated_dirs: Path) -> None:
    monkeypatch.setenv("STUB_KEY", KEY)
    local = ModelSpec(path=str(tiny_llama_dir), device="cpu", dtype="fp32")
    engine = Engine()
    engine.load(local)
    with stub_server(key=KEY) as stub:
        settings = Settings(remote=[RemoteSettings(name="stub", base_url=stub.url,
                                                   api_key_env="STUB_KEY")])
        settings.generation.max_new_tokens = 8  # the tiny model's context is 256
        remote.use_profiles([r.profile() for r in settings.remote])
        app = make_app(engine, settings=settings, spec=local)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            app.chat.model_spec = local
            await _say(pilot, "first")
            app.load_model(ModelSpec(path="remote://stub/ok"))
            await settle(pilot)
            assert engine.info is not None and engine.info.name == "stub:ok"
            status = str(app.chat.status.render_status())
            assert "stub:ok" in status and "remote: 127.0.0.1:" in status
            assert "offline" not in status
            await _say(pilot, "second")
            views = app.chat.log_view.views()
            assert views[-1].content == "".join(OK_PIECES)
            # regenerate on the remote model: the first remote reply stays as a sibling
            await pilot.press("ctrl+r")
            await settle(pilot)
            conv = app.chat.conv
            assert conv is not None
            last_id = app.store.messages(conv.id)[-1].id
            siblings = app.store.siblings(last_id)
            assert len(siblings) == 2
            assert all(m.provenance["model"]["runtime"] == "remote" for m in siblings)
            # the switcher lists the remote models beside the local ones
            await pilot.press("f12")
            await settle(pilot)
            switcher = app.screen
            assert isinstance(switcher, ModelSwitcher)
            labels = [e.label for e in switcher.entries]
            assert "stub: ok" in labels and "stub: drop" in labels
            await pilot.press("escape")
            app.load_model(local)
            await settle(pilot)
            await _say(pilot, "third")
            conv = app.chat.conv
            assert conv is not None
            # the local model was given the whole history, the remote reply included
            sent = [r for r in stub.requests if r["body"].get("model") == "ok"]
            assert sent[-1]["body"]["messages"][-1] == {"role": "user", "content": "second"}
            stored = app.store.messages(conv.id)
            changes = app.store.model_changes(conv.id)
    replies = [m for m in stored if m.role == "assistant"]  # the branch on screen
    assert len(replies) == 3
    models = [m.provenance["model"] for m in replies]
    assert [m["runtime"] for m in models][1] == "remote"
    assert models[0]["runtime"] != "remote" and models[2]["runtime"] != "remote"
    assert models[1]["name"] == "stub:ok" and models[1]["kind"] == "remote"
    assert models[1]["path"] == "remote://stub/ok" and models[1]["device"].startswith("127.0.0.1:")
    assert replies[1].provenance["served_by"] == "fp_stub42"
    assert replies[1].provenance["new_tokens"] == 4 and replies[1].provenance["prompt_tokens"] == 11
    assert replies[1].content == "".join(OK_PIECES)
    assert replies[0].content and replies[2].content  # the local model answered too
    assert [r.status for r in replies] == ["length", "done", "length"]
    assert len(changes) == 2  # a divider each way
    # the key went to the server and into no file: the database, data, config folders
    assert all(r["auth"] == f"Bearer {KEY}" for r in stub.requests)
    for root in (db_path.parent, isolated_dirs):
        for path in root.rglob("*"):
            if path.is_file():
                assert KEY.encode() not in path.read_bytes(), path


class _RemoteFake(FakeEngine):
    """A fake engine whose models are remote ones off this machine."""

    def load(self, spec: ModelSpec, progress: Progress | None = None) -> ModelInfo:
        super().load(spec, progress)
        self.loaded_info = replace(fake_info("lab:big", spec.path), kind="remote",
                                   runtime="remote", dtype="remote", device="gpu-box:8000")
        return self.loaded_info


async def test_a_remote_host_off_this_machine_gets_one_notice_and_a_mark(make_app) -> None:
    app = make_app(_RemoteFake(replies=["ok"]), spec=ModelSpec(path="remote://lab/big"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        said = [n for n in _notes(app) if "sent to gpu-box:8000" in n]
        assert len(said) == 1
        status = str(app.chat.status.render_status())
        assert "remote: gpu-box:8000" in status and "offline" not in status
        app.load_model(ModelSpec(path="remote://lab/big"))
        await settle(pilot)
        assert len([n for n in _notes(app) if "sent to gpu-box:8000" in n]) == 1
    # remembered: a new app does not say it again
    again = make_app(_RemoteFake(), spec=ModelSpec(path="remote://lab/big"))
    async with again.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert not [n for n in _notes(again) if "sent to gpu-box:8000" in n]


async def test_a_loopback_remote_gets_no_notice(make_app) -> None:
    class Loopback(_RemoteFake):
        def load(self, spec: ModelSpec, progress: Progress | None = None) -> ModelInfo:
            info = super().load(spec, progress)
            self.loaded_info = replace(info, device="127.0.0.1:8000")
            return self.loaded_info

    app = make_app(Loopback(), spec=ModelSpec(path="remote://lab/big"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert not [n for n in _notes(app) if "sent to" in n]
        assert "remote: 127.0.0.1:8000" in str(app.chat.status.render_status())


def test_the_inspector_says_the_server_applies_its_template() -> None:
    prompt = Prompt(input_ids=[], text='[{"role": "user", "content": "hi"}]', prompt_tokens=5,
                    context_length=32768, dropped_messages=0, truncated=False, stop=(),
                    format="remote", kept=(ChatMessage("user", "hi"),))
    target = InspectTarget("next", [ChatMessage("user", "hi")], SamplingParams())
    text = str(summary(target, prompt, fake_info("lab:big")))
    assert "applies its own chat template" in text


async def test_compare_a_local_model_beside_a_remote_one(make_app, tiny_llama_dir: Path) -> None:
    from slmchat.tui.screens.compare import CompareChoice
    from tests.tui.test_compare import open_compare

    local = ModelSpec(path=str(tiny_llama_dir), device="cpu", dtype="fp32")
    engine = Engine()
    engine.load(local)
    with stub_server() as stub:
        remote.use_profiles([RemoteSettings(name="stub", base_url=stub.url).profile()])
        settings = Settings()
        settings.generation.max_new_tokens = 8  # the tiny model's context is 256
        app = make_app(engine, settings=settings, spec=local)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            screen = await open_compare(pilot, app, CompareChoice(ModelSpec(path="remote://stub/ok")))
            assert screen.right_engine is not None
            assert screen.right_engine.info is not None
            assert screen.right_engine.info.name == "stub:ok"
            assert screen.schedule == "parallel"  # the server computes: a thread per side
            await pilot.press(*"greet me", "enter")
            await settle(pilot)
            left, right = screen.sides["left"], screen.sides["right"]
            assert right.text == "".join(OK_PIECES)
            right_stats = str(screen.query_one("#cmp-right-stats").render())
            assert "remote 127.0.0.1:" in right_stats and "fp " not in right_stats
            assert "fp " in str(screen.query_one("#cmp-left-stats").render())
            assert left.text and left.text != right.text
            siblings = app.store.siblings(right.msg_id)
            prov = {m.id: m.provenance for m in siblings}
    assert prov[right.msg_id]["model"]["runtime"] == "remote"
    assert prov[left.msg_id]["model"]["runtime"] != "remote"
    assert engine.info is not None and engine.info.kind != "remote"  # the chat's model stays
