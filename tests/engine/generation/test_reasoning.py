"""Reasoning ("thinking") output: the splitter over the text stream, the template's
markers and switch, and the engine end to end on a scripted model with the switch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from slmchat.engine.generation.decode import GenerationChunk
from slmchat.engine.generation.prompting import ChatMessage, render
from slmchat.engine.generation.reasoning import (
    DEFAULT_MARKERS,
    Markers,
    ReasoningSplitter,
    has_switch,
    markers_in,
    opens_inside,
    separate,
    split_reasoning,
    template_kwargs,
    thinks,
)
from slmchat.engine.generation.sampling import SamplingParams
from tests.tinymodels import CHATML_TEMPLATE, THINKING_TEMPLATE, make_thinking_llama

REPLY = "<think>\nThe user greets me. I greet back.\n</think>\n\nHello there!"


def feed_all(pieces: list[str], markers: Markers = DEFAULT_MARKERS,
             inside: bool = False) -> tuple[str, str]:
    splitter = ReasoningSplitter(markers, inside)
    thought, answer = "", ""
    for piece in pieces:
        r, a = splitter.feed(piece)
        thought, answer = thought + r, answer + a
    r, a = splitter.flush()
    return thought + r, answer + a


def test_whole_reply_is_split_and_trimmed() -> None:
    assert split_reasoning(REPLY) == ("The user greets me. I greet back.", "Hello there!")


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
def test_markers_split_across_tokens_give_the_same_result(size: int) -> None:
    pieces = [REPLY[i:i + size] for i in range(0, len(REPLY), size)]
    assert feed_all(pieces) == ("The user greets me. I greet back.", "Hello there!")


def test_no_reasoning_is_held_back_past_the_marker_it_could_be() -> None:
    splitter = ReasoningSplitter()
    assert splitter.feed("<th") == ("", "")  # could still become <think>
    assert splitter.feed("ink>Let") == ("Let", "")
    assert splitter.feed(" me see</th") == (" me see", "")  # could be </think>
    assert splitter.feed("is is it</think>") == ("</this is it", "")  # it was not
    assert splitter.feed("  ") == ("", "")  # white space after the block waits
    assert splitter.feed("Yes.") == ("", "Yes.")
    assert splitter.feed(" <think>x</think>") == ("", " <think>x</think>")  # answer text now


def test_an_unclosed_block_at_the_end_is_all_reasoning() -> None:
    assert feed_all(["<think>", "I am still ", "thinking about it", "\n"]) == (
        "I am still thinking about it", "")


def test_a_reply_without_reasoning_passes_unchanged() -> None:
    for text in ("Plain answer.", "  indented answer", "<div>html</div>", "<", "<thin", " "):
        assert feed_all([text]) == ("", text), text
    # Leading white space waits for a marker only so long: a reply of newlines streams.
    splitter = ReasoningSplitter()
    assert [splitter.feed("\n") for _ in range(3)] == [("", "")] * 3
    assert splitter.feed("\n" * 20) == ("", "\n" * 23)
    assert splitter.feed("\n") == ("", "\n")
    # A marker after the first words is answer text.
    assert feed_all(["Use ", "<think>", " tags"]) == ("", "Use <think> tags")


def test_a_prompt_that_opened_the_block_starts_inside() -> None:
    # DeepSeek-R1's template ends its generation prompt with "<think>\n".
    assert opens_inside("<|Assistant|><think>\n", DEFAULT_MARKERS)
    assert not opens_inside("<|im_start|>assistant\n", DEFAULT_MARKERS)
    assert feed_all(["reasoning", " here</think>", "answer"], inside=True) == (
        "reasoning here", "answer")
    # A reply being continued: open when its last marker opens a block.
    assert opens_inside("", DEFAULT_MARKERS, continued="<think>\nhalf a thought")
    assert not opens_inside("", DEFAULT_MARKERS, continued="<think>a</think>half an answer")
    assert not opens_inside("", DEFAULT_MARKERS, continued="an answer")


def test_the_template_names_its_markers_and_switch() -> None:
    assert markers_in(CHATML_TEMPLATE) == DEFAULT_MARKERS
    other = "{{ '<|begin_of_thought|>' }} ... {{ '<|end_of_thought|>' }}"
    assert markers_in(other) == Markers("<|begin_of_thought|>", "<|end_of_thought|>")
    assert feed_all(["<|begin_of_thought|>hm<|end_of_", "thought|>ok"], markers_in(other)) == (
        "hm", "ok")
    assert has_switch(THINKING_TEMPLATE) and not has_switch(CHATML_TEMPLATE)
    assert not has_switch("{{ enable_thinking_extra }}")
    assert thinks(THINKING_TEMPLATE) and thinks(other) and not thinks(CHATML_TEMPLATE)
    assert template_kwargs(THINKING_TEMPLATE, False) == {"enable_thinking": False}
    assert template_kwargs(THINKING_TEMPLATE, None) == {}
    assert template_kwargs(CHATML_TEMPLATE, False) == {}  # no switch: the setting is ignored


def chunks_of(pieces: list[str], finish: str = "stop") -> Iterator[GenerationChunk]:
    for n, piece in enumerate(pieces, 1):
        yield GenerationChunk(text=piece, new_tokens=n, prompt_tokens=5, ttft_s=0.1,
                              prefill_tps=1.0, decode_tps=1.0, seed=1)
    yield GenerationChunk(text="", new_tokens=len(pieces), prompt_tokens=5, ttft_s=0.1,
                          prefill_tps=1.0, decode_tps=1.0, seed=1,
                          finish_reason=finish)  # type: ignore[arg-type]


def test_separate_counts_reasoning_tokens_and_keeps_the_last_chunk() -> None:
    out = list(separate(chunks_of(["<think>", "a", " b", "</think>", "\n\n", "Yes", "."])))
    assert "".join(c.reasoning for c in out) == "a b"
    assert "".join(c.text for c in out) == "Yes."
    assert out[-1].finish_reason == "stop" and out[-1].reasoning_tokens == 4
    assert all(c.text or c.reasoning for c in out[:-1])  # nothing empty but the end
    # Cut while thinking: everything is reasoning, counted to the end.
    cut = list(separate(chunks_of(["<think>", "still", " going"], finish="length")))
    assert "".join(c.reasoning for c in cut) == "still going"
    assert "".join(c.text for c in cut) == ""
    assert cut[-1].finish_reason == "length" and cut[-1].reasoning_tokens == 3
    # No reasoning: the text as it was, no reasoning tokens; a held "<" comes out at the end.
    plain = list(separate(chunks_of(["<"])))
    assert [c.text for c in plain] == ["<", ""] and plain[-1].reasoning_tokens == 0


class Templated:
    """Just enough tokenizer for render(): transformers' template rendering."""

    def __init__(self, template: str) -> None:
        from tests.tinymodels import build_tokenizer

        self.tok = build_tokenizer()
        self.tok.chat_template = template
        self.chat_template = template

    def apply_chat_template(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return self.tok.apply_chat_template(*args, **kwargs)


def test_render_passes_the_switch_only_to_a_template_that_has_it() -> None:
    msgs = [ChatMessage("user", "hi")]
    thinking = Templated(THINKING_TEMPLATE)
    on, _ = render(thinking, msgs, thinking=True)
    off, _ = render(thinking, msgs, thinking=False)
    default, _ = render(thinking, msgs)
    assert off.endswith("<|assistant|><think>\n\n</think>\n\n")
    assert on == default and on.endswith("<|assistant|>")
    chatml = Templated(CHATML_TEMPLATE)
    assert render(chatml, msgs, thinking=False) == render(chatml, msgs)


@pytest.fixture(scope="module")
def thinking_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_thinking_llama(tmp_path_factory.mktemp("thinking"))


@pytest.mark.parametrize("lite", [False, True])  # transformers' tokenizer, and the lite one
def test_engine_streams_reasoning_apart_on_a_thinking_model(thinking_dir: Path, lite: bool) -> None:
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.session import Engine

    engine = Engine(lite=lite)
    info = engine.load(ModelSpec(path=str(thinking_dir), dtype="fp32", device="cpu"))
    assert info.thinking_switch
    params = SamplingParams(temperature=0, max_new_tokens=20)
    msgs = [ChatMessage("user", "Where is the fox?")]
    out = list(engine.stream_chat(msgs, params))
    assert "".join(c.reasoning for c in out) == "Paris fox"
    assert "".join(c.text for c in out) == "Berlin dog"
    tok = engine.loaded.tokenizer  # type: ignore[union-attr]
    block = len(tok("<think>Paris fox</think>", add_special_tokens=False)["input_ids"])
    assert out[-1].finish_reason == "stop" and out[-1].reasoning_tokens == block
    assert out[-1].new_tokens > block
    # The switch reaches the template (through both tokenizers).
    off = engine.preview_prompt(msgs, params, thinking=False)
    assert off.text.endswith("<think>\n\n</think>\n\n")
    assert not engine.preview_prompt(msgs, params, thinking=True).text.endswith("</think>\n\n")
    # Raw completions keep the text whole.
    raw = list(engine.stream_chat([ChatMessage("user", "x<|assistant|>")], params, mode="raw"))
    assert "<think>" in "".join(c.text for c in raw)
    assert not any(c.reasoning for c in raw)


def test_a_model_without_the_switch_says_so(tiny_llama_dir: Path) -> None:
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.session import Engine

    engine = Engine()
    info = engine.load(ModelSpec(path=str(tiny_llama_dir), dtype="fp32", device="cpu"))
    assert not info.thinking_switch
    params = SamplingParams(temperature=0, max_new_tokens=4)
    msgs = [ChatMessage("user", "hi")]
    assert (engine.preview_prompt(msgs, params, thinking=False).text
            == engine.preview_prompt(msgs, params).text)


def test_the_llamacpp_tokenizer_passes_the_switch_to_a_gguf_template() -> None:
    pytest.importorskip("llama_cpp")
    from slmchat.engine.model.default import gguf_path
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.runtimes import load as chat_load

    lm = chat_load(ModelSpec(path=str(gguf_path())))
    tok = lm.tokenizer
    msgs = [ChatMessage("user", "hi")]
    assert render(tok, msgs, thinking=False) == render(tok, msgs)  # SmolLM2: no switch
    tok.chat_template, tok._template = THINKING_TEMPLATE, None  # as a Qwen3 GGUF's
    off, _ = render(tok, msgs, thinking=False)
    assert off.endswith("<|assistant|><think>\n\n</think>\n\n")
    assert render(tok, msgs, thinking=True)[0].endswith("<|assistant|>")
