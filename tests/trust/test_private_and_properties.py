"""Private files (0600 / 0700 under a permissive umask) and property-based tests of
prompt building / context trimming and of the conversation store."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slmchat.engine.generation.prompting import ChatMessage, build_prompt
from slmchat.engine.store.store import Store
from tests.trust.counts import record


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)  # the usual default: new files 0644, folders 0755
    yield
    os.umask(old)


def test_user_files_are_private(loose_umask: None, isolated_dirs: Path, tiny_llama_dir: Path,
                                tmp_path: Path) -> None:
    from slmchat.config import Settings, save_settings, settings_path
    from slmchat.engine.finetune.args import TrainArgs
    from slmchat.engine.finetune.plan import prepare_run
    from slmchat.engine.fsutil import write_private
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.tools.export import export_model
    from slmchat.paths import config_dir, data_dir, runs_dir

    store = Store.open_default()
    store.add_message(store.create_conversation("x").id, "user", "secret")
    db = data_dir() / "conversations.db"
    checked = {db: 0o600, db.with_name(db.name + "-wal"): 0o600, data_dir(): 0o700,
               config_dir(): 0o700, runs_dir(): 0o700}
    save_settings(Settings())
    checked[settings_path()] = 0o600
    notes = tmp_path / "notes.txt"
    notes.write_text("hello " * 200)
    run = prepare_run(TrainArgs(data=str(notes), model=str(tiny_llama_dir), max_steps=1))  # type: ignore[arg-type]
    checked[run] = 0o700
    exported = export_model(ModelSpec(path=str(tiny_llama_dir), device="cpu", dtype="fp32"),
                            out=tmp_path / "exp", gguf=tmp_path / "exp.gguf", verify=False)
    assert exported.out is not None and exported.gguf is not None
    checked[exported.out] = 0o700
    checked[exported.gguf] = 0o600
    checked[write_private(tmp_path / "chat.md", "secret")] = 0o600
    wrong = {str(p): oct(mode(p)) for p, want in checked.items() if mode(p) != want}
    store.close()
    record(states=len(checked))
    assert wrong == {}


# --- prompt building ---------------------------------------------------------------

NO_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)  # sqlite3 cannot encode lone surrogates
text = st.text(st.characters(codec="utf-8", exclude_categories=NO_SURROGATES), max_size=300)
turns = st.lists(text, min_size=1, max_size=8)


@pytest.fixture(scope="module")
def tokenizers(tiny_llama_dir: Path, tiny_gpt2_dir: Path) -> dict[str, object]:
    from transformers import AutoTokenizer

    return {"template": AutoTokenizer.from_pretrained(str(tiny_llama_dir)),
            "transcript": AutoTokenizer.from_pretrained(str(tiny_gpt2_dir))}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(system=text, contents=turns, context=st.integers(32, 400), new=st.integers(1, 64),
       kind=st.sampled_from(["template", "transcript"]))
def test_build_prompt_keeps_budget_system_and_newest(
    tokenizers: dict[str, object], system: str, contents: list[str], context: int, new: int,
    kind: str,
) -> None:
    if new >= context:
        return
    record(examples=1)
    tok = tokenizers[kind]
    messages = [ChatMessage("system", system)] if system.strip() else []
    for i, content in enumerate(contents):
        messages.append(ChatMessage("user" if i % 2 == 0 else "assistant", content))
    if messages[-1].role != "user":
        messages.append(ChatMessage("user", contents[-1]))
    prompt = build_prompt(tok, messages, context, new)
    budget = context - new
    assert prompt.prompt_tokens == len(prompt.input_ids) <= budget
    if not prompt.truncated:
        # Whole messages only: the newest user message and the system prompt are in.
        newest = messages[-1].content
        assert newest in prompt.text or not newest.strip()
        if messages[0].role == "system":
            assert system in prompt.text
        assert prompt.dropped_messages <= len(messages) - 1
    else:
        assert len(prompt.input_ids) == budget


# --- store ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def prop_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    store = Store(tmp_path_factory.mktemp("prop") / "c.db")
    yield store
    store.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(title=st.text(st.characters(exclude_categories=NO_SURROGATES), max_size=80),
       content=st.text(st.characters(exclude_categories=NO_SURROGATES), max_size=500),
       query=st.text(max_size=60))
def test_store_round_trip_and_search_never_raises(prop_store: Store, title: str, content: str,
                                                  query: str) -> None:
    record(examples=1)
    conv = prop_store.create_conversation(title, {"system_prompt": content})
    msg = prop_store.add_message(conv.id, "user", content)
    assert prop_store.get_message(msg.id).content == content
    got = prop_store.get_conversation(conv.id)
    assert (got.title, got.settings) == (title, {"system_prompt": content})
    hits = prop_store.search(query)
    assert isinstance(hits, list)
    for word in content.split()[:3]:
        if word.isalnum():  # a plain word is found again in its own message
            assert any(h.message_id == msg.id for h in prop_store.search(word, limit=1000))
