"""Constrained decoding on every runtime: the reply follows the constraint whatever the
model would rather say (tiny random models would otherwise print noise)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from slmchat.engine.generation.constraints import Constraint
from slmchat.engine.generation.prompting import ChatMessage
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model.spec import ModelSpec
from slmchat.engine.session import Engine
from slmchat.errors import InvalidParameterError

SCHEMA = {"type": "object", "additionalProperties": False, "required": ["ok", "n", "tag"],
          "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer", "minimum": 0, "maximum": 9},
                         "tag": {"enum": ["red", "green"]}}}
CASES = [
    (Constraint("json_schema", json.dumps(SCHEMA)),
     lambda t: (d := json.loads(t)) and set(d) == {"ok", "n", "tag"} and 0 <= d["n"] <= 9
     and d["tag"] in ("red", "green") and isinstance(d["ok"], bool)),
    (Constraint("regex", r"[0-9]{3}-[0-9]{4}"), lambda t: re.fullmatch(r"[0-9]{3}-[0-9]{4}", t)),
    (Constraint.choices(["yes", "no", "maybe"]), lambda t: t in ("yes", "no", "maybe")),
    (Constraint("lark", 'start: "a" B "c"\nB: /b{1,5}/'), lambda t: re.fullmatch(r"ab{1,5}c", t)),
]


def _engines(tiny_llama_dir: Path) -> list[Engine]:
    out = []
    for runtime in ("transformers", "onnx"):
        engine = Engine()
        engine.load(ModelSpec(path=str(tiny_llama_dir), device="cpu", runtime=runtime))  # type: ignore[arg-type]
        out.append(engine)
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return out
    from slmchat.engine.model.default import gguf_path

    engine = Engine()
    engine.load(ModelSpec(path=str(gguf_path())))
    return [*out, engine]


@pytest.fixture(scope="module")
def engines(tiny_llama_dir: Path) -> list[Engine]:
    return _engines(tiny_llama_dir)


@pytest.mark.parametrize(("constraint", "ok"), CASES, ids=[c.kind for c, _ in CASES])
def test_every_runtime_follows_the_constraint(engines: list[Engine], constraint: Constraint, ok) -> None:
    for engine in engines:
        for params in (SamplingParams(temperature=0, max_new_tokens=120),
                       SamplingParams(temperature=0.9, top_p=0.95, seed=3, max_new_tokens=120)):
            chunks = list(engine.stream_chat([ChatMessage("user", "Answer.")], params,
                                             constraint=constraint))
            text = "".join(c.text for c in chunks)
            assert engine.info is not None
            assert chunks[-1].finish_reason == "stop", (engine.info.runtime, text)
            assert ok(text.strip()), (engine.info.runtime, text)
            assert chunks[-1].constraint == constraint.label


@pytest.mark.parametrize("bad", [Constraint("regex", "([a-"), Constraint("lark", "start: ("),
                                 Constraint("json_schema", '{"type": "object", "properties": 5}'),
                                 Constraint("json_schema", "{not json")])
def test_a_constraint_that_does_not_compile_is_one_line_before_any_token(engines, bad) -> None:
    with pytest.raises(InvalidParameterError) as err:
        bad.check()
    assert "\n" not in str(err.value)
    stream = engines[0].stream_chat([ChatMessage("user", "x")], SamplingParams(max_new_tokens=4),
                                    constraint=bad)
    with pytest.raises(InvalidParameterError):
        next(stream)


def test_stop_strings_still_end_a_constrained_reply(engines: list[Engine]) -> None:
    for engine in engines:
        cut = "".join(c.text for c in engine.stream_chat(
            [ChatMessage("user", "x")], SamplingParams(temperature=0, max_new_tokens=60, stop=("cdcd",)),
            constraint=Constraint("regex", "ab(cd){5}")))
        assert cut == "ab"
