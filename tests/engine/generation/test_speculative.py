"""Speculative decoding (generation/speculative.py and the decode loop): drafts verified in
one forward keep the reply exactly the one plain decoding gives, greedy and sampled, on
tiny random models with drafts that are partly accepted and partly rejected."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from slmchat.engine.generation.backends.transformers import TransformersBackend
from slmchat.engine.generation.constraints import Constraint
from slmchat.engine.generation.decode import PromptCache, stream_backend
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.generation.speculative import (
    AdaptiveK,
    LookupDrafter,
    PredictionDrafter,
    Speculation,
    parse,
)
from slmchat.engine.model.loader import load
from slmchat.engine.model.spec import ModelSpec
from slmchat.errors import InvalidParameterError
from tests.engine.generation.fakes import Replay
from tests.tinymodels import CORPUS

GREEDY = SamplingParams(temperature=0, repetition_penalty=1.0, max_new_tokens=48, ignore_eos=True)


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir: Path):
    return load(ModelSpec(path=str(tiny_llama_dir), device="cpu"))


def _run(backend, lm, ids, params, drafter=None, cache=None):
    chunks = list(stream_backend(backend, lm.tokenizer, ids, params, prompt_cache=cache,
                                 drafter=drafter))
    return "".join(c.text for c in chunks), chunks[-1]


def _reply_ids(lm, backend, ids, params) -> list[int]:
    cache = PromptCache()
    _run(backend, lm, ids, params, cache=cache)
    return cache.tokens[len(ids):]


def test_parse_modes_and_refuses_bad_ones() -> None:
    assert parse("auto") == Speculation("auto") and parse(None) == Speculation("auto")
    assert parse("OFF").mode == "off" and parse("lookup").mode == "lookup"
    assert parse("draft:/m/small") == Speculation("draft", "/m/small")
    assert parse("draft:x").label == "draft:x"
    for bad in ("fast", "lookup:x", ""):
        if bad == "":
            continue
        with pytest.raises(InvalidParameterError):
            parse(bad)


def test_lookup_proposes_what_followed_the_latest_match() -> None:
    d = LookupDrafter([1, 2, 3, 4, 9, 2, 3, 5, 6, 7, 2, 3])
    # "2 3" last occurred followed by 5: the most recent earlier match wins.
    assert d.propose(3) == [5, 6, 7]
    d.append(4)  # "2 3 4": the 3-gram matches the first occurrence
    assert d.propose(2) == [9, 2]
    assert LookupDrafter([1, 2, 3]).propose(4) == []  # nothing repeats
    assert d.propose(0) == []


def test_adaptive_k_grows_shrinks_and_pauses_after_misses() -> None:
    k = AdaptiveK(k=4, k_max=8)
    k.record(4, 4)
    assert k.want() == 6
    k.record(6, 2)
    assert k.want() == 3
    k.record(3, 0)
    k.record(1, 0)  # two misses in a row: drafting pauses for a few tokens
    assert [k.want() for _ in range(4)] == [0, 0, 0, 0]
    assert k.want() > 0


def test_adaptive_k_failed_probe_pauses_again_for_longer() -> None:
    """With every draft rejected, drafting backs off exponentially: a probe after a pause
    that keeps nothing pauses again at once, for twice as long; one that keeps a token
    ends the back-off."""
    k = AdaptiveK(k=4, k_max=8)
    drafts_at = []
    for t in range(64):
        want = k.want()
        if want:
            drafts_at.append(t)
            k.record(want, 0)
    assert drafts_at == [0, 1, 6, 15, 32]  # pauses of 4, 8, 16, 32 tokens
    k = AdaptiveK(k=4, k_max=8)
    k.record(4, 0)
    k.record(3, 0)
    assert [k.want() for _ in range(5)] == [0, 0, 0, 0, 2]  # the probe
    k.record(2, 1)  # it keeps a token: the back-off ends
    k.record(2, 0)
    assert k.want() > 0  # one miss outside a probe: no pause yet
    k.record(2, 0)
    assert [k.want() for _ in range(4)] == [0, 0, 0, 0]  # the pause is short again


@pytest.mark.parametrize("runner", ["fast", "hf"])
def test_greedy_identical_with_partly_rejected_drafts(tiny, runner: str) -> None:
    backend = TransformersBackend(tiny.model, runner)
    ids = tiny.tokenizer(CORPUS[:300])["input_ids"]
    plain, plain_last = _run(backend, tiny, ids, GREEDY)
    reply = _reply_ids(tiny, backend, ids, GREEDY)
    text, last = _run(backend, tiny, ids, GREEDY, Replay(len(ids), reply))
    assert text == plain and last.new_tokens == plain_last.new_tokens == GREEDY.max_new_tokens
    assert last.speculative == "replay"
    assert 0 < last.accepted < last.drafted  # both verdicts were exercised
    looked, last = _run(backend, tiny, ids, GREEDY, LookupDrafter([]))
    assert looked == plain and last.speculative == "lookup"


class Recording(Replay):
    """A Replay that remembers each draft and where in the reply it was proposed."""

    def __init__(self, prompt_len: int, reply: list[int], bad: int = 4) -> None:
        super().__init__(prompt_len, reply, bad)
        self.drafts: list[tuple[int, list[int]]] = []

    def propose(self, k: int) -> list[int]:
        out = super().propose(k)
        self.drafts.append((self.n - self.start, out))
        return out


def test_chunks_say_which_text_came_from_accepted_drafts(tiny) -> None:
    """Each chunk of a speculative reply says whether its text is an accepted draft
    token's: the flagged chunks are exactly the tokens at the positions where a draft
    matched the reply (the model's own token after a draft is not one), their count is
    ``accepted``, and their text, joined, is those tokens' text in the plain reply."""
    backend = TransformersBackend(tiny.model, "fast")
    ids = tiny.tokenizer(CORPUS[:300])["input_ids"]
    plain = list(stream_backend(backend, tiny.tokenizer, ids, GREEDY))
    assert not any(c.accepted_draft for c in plain)  # no drafter: nothing is flagged
    # In a plain reply every token gives out its own text: chunk k is token k's.
    assert [c.new_tokens for c in plain if c.text] == list(range(1, GREEDY.max_new_tokens + 1))
    token_text = {c.new_tokens - 1: c.text for c in plain if c.text}
    reply = _reply_ids(tiny, backend, ids, GREEDY)
    drafter = Recording(len(ids), reply)
    chunks = list(stream_backend(backend, tiny.tokenizer, ids, GREEDY, drafter=drafter))
    kept: set[int] = set()
    for at, draft in drafter.drafts:
        for i, token in enumerate(draft):
            if reply[at + i] != token:
                break
            kept.add(at + i)
    flagged = [c for c in chunks if c.accepted_draft]
    assert {c.new_tokens - 1 for c in flagged} == kept
    assert len(flagged) == chunks[-1].accepted > 0
    assert chunks[-1].accepted < chunks[-1].drafted  # some drafts were cut short
    assert "".join(c.text for c in flagged) == "".join(token_text[i] for i in sorted(kept))
    assert "".join(c.text for c in chunks) == "".join(c.text for c in plain)


def test_seeded_sampling_gives_the_same_reply(tiny) -> None:
    backend = TransformersBackend(tiny.model, "fast")
    ids = tiny.tokenizer(CORPUS[:200])["input_ids"]
    params = SamplingParams(temperature=0.7, top_k=20, top_p=0.95, repetition_penalty=1.2,
                            max_new_tokens=40, seed=11, ignore_eos=True)
    plain, _ = _run(backend, tiny, ids, params)
    reply = _reply_ids(tiny, backend, ids, params)
    text, last = _run(backend, tiny, ids, params, Replay(len(ids), reply, bad=3))
    assert text == plain and 0 < last.accepted < last.drafted


def test_sampled_distribution_follows_the_model(tiny) -> None:
    """The accept/reject rule keeps the model's distribution. A drafter proposes the
    model's most likely second token d; over many seeds, how often the reply's second
    token is d, and how often it is the runner-up r (only reachable through a rejection),
    match the model's probabilities p(d) and p(r) at that position (z < 4)."""
    import torch

    temp = 0.15  # a random tiny model is near-uniform at 1.0; this spreads it
    backend = TransformersBackend(tiny.model, "fast")
    ids = tiny.tokenizer("The quick brown")["input_ids"]

    class Oracle:
        name = "oracle"

        def __init__(self) -> None:
            self.seen: list[int] = []
            self.probs: torch.Tensor | None = None

        def append(self, token: int) -> None:
            self.seen.append(token)

        def propose(self, k: int) -> list[int]:
            with torch.inference_mode():
                logits = tiny.model(torch.tensor([self.seen])).logits[0, -1].float()
            self.probs = torch.softmax(logits / temp, -1)
            return [int(torch.argmax(self.probs))]

        def close(self) -> None:
            return None

    n, hits, runner_up, exp_hit, var_hit, exp_ru, var_ru = 0, 0, 0, 0.0, 0.0, 0.0, 0.0
    for seed in range(1500):
        oracle = Oracle()
        params = SamplingParams(temperature=temp, top_k=0, top_p=1.0, repetition_penalty=1.0,
                                max_new_tokens=3, ignore_eos=True, seed=seed)
        last = list(stream_backend(backend, tiny.tokenizer, ids, params, drafter=oracle))[-1]
        assert last.drafted >= 1 and oracle.probs is not None
        second = oracle.seen[len(ids) + 1]
        top2 = torch.topk(oracle.probs, 2)
        p_d, p_r = (float(v) for v in top2.values)
        d, r = (int(i) for i in top2.indices)
        assert last.accepted == (second == d)
        n += 1
        hits += second == d
        runner_up += second == r
        exp_hit, var_hit = exp_hit + p_d, var_hit + p_d * (1 - p_d)
        exp_ru, var_ru = exp_ru + p_r, var_ru + p_r * (1 - p_r)
    assert 0.2 * n < hits < 0.95 * n  # both verdicts common
    assert abs(hits - exp_hit) < 4 * math.sqrt(var_hit), (hits, exp_hit)
    assert abs(runner_up - exp_ru) < 4 * math.sqrt(var_ru) + 1, (runner_up, exp_ru)


def test_constrained_reply_identical_with_speculation(tiny) -> None:
    backend = TransformersBackend(tiny.model, "fast")
    ids = tiny.tokenizer("Berlin is the capital of")["input_ids"]
    constraint = Constraint("regex", r"(ab|abc){2,6}")
    params = SamplingParams(temperature=0, repetition_penalty=1.0, max_new_tokens=30)
    plain = list(stream_backend(backend, tiny.tokenizer, ids, params, constraint=constraint))
    spec = list(stream_backend(backend, tiny.tokenizer, ids, params, constraint=constraint,
                               drafter=LookupDrafter([], min_ngram=1)))
    assert "".join(c.text for c in spec) == "".join(c.text for c in plain)
    assert spec[-1].finish_reason == plain[-1].finish_reason


def test_rejected_drafts_leave_the_kv_cache_and_the_next_turn_reuses_it(tiny) -> None:
    backend = TransformersBackend(tiny.model, "fast")
    ids = tiny.tokenizer(CORPUS[:200])["input_ids"]
    reply = _reply_ids(tiny, backend, ids, GREEDY)
    cache = PromptCache()
    _, last = _run(backend, tiny, ids, GREEDY, Replay(len(ids), reply, bad=2), cache=cache)
    assert last.drafted > last.accepted
    # The kept state is prompt + reply (the last token not fed), no rejected draft in it.
    assert cache.tokens == ids + reply[: len(cache.tokens) - len(ids)]
    assert len(cache.tokens) >= len(ids) + len(reply) - 1
    follow = ids + reply + tiny.tokenizer(" Paris")["input_ids"]
    plain_next, _ = _run(backend, tiny, follow, GREEDY)
    spec_next, last = _run(backend, tiny, follow, GREEDY, LookupDrafter([]), cache=cache)
    assert spec_next == plain_next and last.cached_tokens > len(ids)


def test_stop_string_and_length_end_a_speculative_reply_where_plain_does(tiny) -> None:
    backend = TransformersBackend(tiny.model, "fast")
    ids = tiny.tokenizer(CORPUS[:300])["input_ids"]
    base = _run(backend, tiny, ids, GREEDY)[0]
    stop = base[10:14]
    for params in (SamplingParams(temperature=0, repetition_penalty=1.0, max_new_tokens=7,
                                  ignore_eos=True),
                   SamplingParams(temperature=0, repetition_penalty=1.0, max_new_tokens=48,
                                  stop=(stop,), ignore_eos=True)):
        reply = _reply_ids(tiny, backend, ids, GREEDY)
        plain, plain_last = _run(backend, tiny, ids, params)
        text, last = _run(backend, tiny, ids, params, Replay(len(ids), reply, bad=5))
        assert (text, last.new_tokens, last.finish_reason) == (
            plain, plain_last.new_tokens, plain_last.finish_reason)


def test_engine_modes_auto_lookup_off(tiny_llama_dir: Path) -> None:
    """The engine drafts by lookup for ``auto`` where the runtime speculates, never for
    ``off``, and the reply is the same in every mode."""
    from slmchat.engine.generation.prompting import ChatMessage
    from slmchat.engine.session import Engine

    engine = Engine(speculation=parse("off"))
    engine.load(ModelSpec(path=str(tiny_llama_dir), device="cpu", runtime="transformers"))
    messages = [ChatMessage("user", CORPUS[:250])]
    params = SamplingParams(temperature=0, repetition_penalty=1.0, max_new_tokens=40)
    seen = {}
    flagged: dict[str, tuple[int, int]] = {}
    for mode in ("off", "auto", "lookup"):
        engine.speculation = parse(mode)
        chunks = list(engine.stream_chat(messages, params, reuse_cache=False))
        seen[mode] = ("".join(c.text for c in chunks), chunks[-1].speculative)
        # stream_chat keeps the decode loop's word on which text was an accepted draft
        flagged[mode] = (sum(c.accepted_draft for c in chunks), chunks[-1].accepted)
    assert seen["off"][1] is None and seen["auto"][1] == "lookup" == seen["lookup"][1]
    # (The reasoning layer gives a reply's leading white space out in one chunk, so
    # several accepted tokens' text can share one flag there.)
    assert flagged["off"] == (0, 0) and 0 < flagged["lookup"][0] <= flagged["lookup"][1]
    assert seen["off"][0] == seen["auto"][0] == seen["lookup"][0]


def test_prediction_drafts_in_step_with_the_reply_then_by_lookup() -> None:
    """The guess is drafted from its start while the reply follows it (prompt tokens do
    not move it); after the reply leaves it, lookup over guess + prompt + reply finds the
    unchanged rest again."""
    guess = [10, 11, 12, 13, 14, 15, 16, 17]
    d = PredictionDrafter(guess, prompt_tokens=3)
    for t in (1, 2, 3):
        d.append(t)
    assert d.propose(3) == [10, 11, 12]
    for t in (10, 11):
        d.append(t)
    assert d.propose(4) == [12, 13, 14, 15]
    for t in (99, 13, 14):  # an edit: 12 replaced by 99, then the guess again
        d.append(t)
    assert d.propose(3) == [15, 16, 17]  # from the lookup index: "13 14" -> 15 16 17
    assert PredictionDrafter([], prompt_tokens=0).propose(3) == []


def test_engine_prediction_drafts_and_keeps_the_plain_reply(tiny_llama_dir: Path) -> None:
    """A request's prediction (OpenAI's Predicted Outputs) is the draft: the reply is the
    plain one token for token; a correct guess is accepted, a guess that differs after a
    few tokens is partly rejected; with speculation off the prediction is not used."""
    from slmchat.engine.generation.prompting import ChatMessage
    from slmchat.engine.session import Engine

    engine = Engine(speculation=parse("off"))
    engine.load(ModelSpec(path=str(tiny_llama_dir), device="cpu", runtime="transformers"))
    messages = [ChatMessage("user", CORPUS[:200])]
    params = SamplingParams(temperature=0, repetition_penalty=1.0, max_new_tokens=30,
                            ignore_eos=True)

    def reply(prediction: str | None):
        chunks = list(engine.stream_chat(messages, params, reuse_cache=False,
                                         prediction=prediction))
        return "".join(c.text for c in chunks), chunks[-1]

    plain, last = reply(None)  # (the tiny random model repeats one token)
    assert last.speculative is None
    off, last = reply(plain)
    assert off == plain and last.speculative is None and last.drafted == 0
    engine.speculation = parse("auto")
    same, last = reply(plain)
    assert same == plain and last.speculative == "prediction"
    assert last.accepted >= 20 and last.drafted - last.accepted <= 2, (last.accepted, last.drafted)
    # (The reply's first token comes from the prefill; a guess whose first token differs
    # is left at once for lookup, so nothing of it is drafted: that case is below.)


def test_a_guess_that_leaves_the_reply_is_cut_and_the_reply_stays_plain(tiny) -> None:
    backend = TransformersBackend(tiny.model, "fast")
    ids = tiny.tokenizer(CORPUS[:300])["input_ids"]
    plain, _ = _run(backend, tiny, ids, GREEDY)
    reply = _reply_ids(tiny, backend, ids, GREEDY)
    wrong = [t for t in range(5, 400) if t not in reply][:20]
    guess = reply[:6] + wrong  # right for 5 tokens after the first, then wrong
    text, last = _run(backend, tiny, ids, GREEDY, PredictionDrafter(guess, len(ids)))
    assert text == plain and last.speculative == "prediction"
    assert last.accepted >= 5 and last.drafted > last.accepted


@pytest.fixture(scope="module")
def other_tiny(tmp_path_factory: pytest.TempPathFactory):
    from tests.tinymodels import make_tiny_llama

    folder = make_tiny_llama(tmp_path_factory.mktemp("tiny-draft"), seed=7)
    return folder, load(ModelSpec(path=str(folder), device="cpu"))


@pytest.mark.parametrize("which", ["same", "other"])
def test_draft_model_replies_are_the_plain_ones(tiny, other_tiny, which: str) -> None:
    """A draft model that agrees (the same weights: every draft kept) and one that does
    not (other random weights): the reply is the plain one either way."""
    from slmchat.engine.generation.speculative import DraftModelDrafter

    backend = TransformersBackend(tiny.model, "fast")
    draft_lm = tiny if which == "same" else other_tiny[1]
    ids = tiny.tokenizer(CORPUS[:120])["input_ids"]
    for params in (GREEDY, SamplingParams(temperature=0.8, max_new_tokens=40, seed=5,
                                          ignore_eos=True)):
        plain, _ = _run(backend, tiny, ids, params)
        drafter = DraftModelDrafter(TransformersBackend(draft_lm.model, "fast"))
        text, last = _run(backend, tiny, ids, params, drafter)
        assert text == plain and last.speculative == "draft" and last.drafted > 0
        if which == "same" and params is GREEDY:
            assert last.accepted == last.drafted


def test_engine_draft_mode_checks_the_vocabulary(tiny_llama_dir: Path, other_tiny,
                                                 tmp_path: Path) -> None:
    import shutil

    from slmchat.engine.generation.prompting import ChatMessage
    from slmchat.engine.session import Engine
    from tests.tinymodels import build_tokenizer

    engine = Engine(speculation=parse(f"draft:{other_tiny[0]}"))
    info = engine.load(ModelSpec(path=str(tiny_llama_dir), device="cpu", runtime="transformers"))
    assert not info.warnings
    messages = [ChatMessage("user", CORPUS[:200])]
    params = SamplingParams(temperature=0, repetition_penalty=1.0, max_new_tokens=30)
    last = list(engine.stream_chat(messages, params))[-1]
    assert last.speculative == "draft" and last.drafted > 0
    # A draft whose tokenizer splits text differently is refused, in one warning line.
    odd = tmp_path / "odd"
    shutil.copytree(other_tiny[0], odd)
    build_tokenizer(vocab_size=len(other_tiny[1].tokenizer) - 20).save_pretrained(str(odd))
    engine = Engine(speculation=parse(f"draft:{odd}"))
    info = engine.load(ModelSpec(path=str(tiny_llama_dir), device="cpu", runtime="transformers"))
    assert len(info.warnings) == 1 and "cannot draft" in info.warnings[0], info.warnings
    last = list(engine.stream_chat(messages, params))[-1]
    assert last.speculative == "lookup"


def test_same_vocabulary_compares_sizes_ends_and_splits() -> None:
    from slmchat.engine.generation.speculative import same_vocabulary

    class Tok:
        def __init__(self, n: int, eos: int, shift: int = 0) -> None:
            self.n, self.eos_token_id, self.shift = n, eos, shift

        def __len__(self) -> int:
            return self.n

        def __call__(self, text: str) -> dict[str, list[int]]:
            return {"input_ids": [ord(c) % self.n + (self.shift if c == "x" else 0) for c in text]}

    assert same_vocabulary(Tok(300, 2), Tok(300, 2)) is None
    assert "size" in (same_vocabulary(Tok(300, 2), Tok(301, 2)) or "")
    assert "end-of-sequence" in (same_vocabulary(Tok(300, 2), Tok(300, 3)) or "")
    assert "differently" in (same_vocabulary(Tok(300, 2), Tok(300, 2, shift=1)) or "")


def test_onnx_copies_verify_drafts_in_a_logits_window(tiny_llama_dir: Path) -> None:
    """ONNX copies keep logits for the last 16 positions of a forward: a draft is scored
    in one forward, the rejected part rewound, and no prompt position pays for an LM
    head (the rows before the window are zeros)."""
    import numpy as np

    from slmchat.engine.generation.backends.onnx import logits_window
    from slmchat.engine.model.onnx import LOGITS_WINDOW
    from slmchat.engine.runtimes import backend_for
    from slmchat.engine.runtimes import load as chat_load

    lm = chat_load(ModelSpec(path=str(tiny_llama_dir)))
    assert lm.info.runtime == "onnx" and logits_window(lm.model) == LOGITS_WINDOW == 16
    state = backend_for(lm).new_state()
    assert state.verifies
    ids = lm.tokenizer(CORPUS[:200])["input_ids"]
    state.reserve(len(ids) + 32)
    last = state.extend(ids)
    full = np.asarray(state._gen.get_output("logits")).reshape(len(ids), -1)
    assert not full[:-16].any() and full[-16:].any(axis=1).all()  # zeros before the window
    np.testing.assert_array_equal(full[-1], last[0])
    draft = ids[5:9]
    rows = state.score(draft)
    assert rows.shape == (4, len(lm.tokenizer)) and state.tokens == ids + draft
    assert state.rewind(len(ids) + 1) == len(ids) + 1 and state.tokens == ids + draft[:1]
    with pytest.raises(ValueError, match="keeps logits for 16"):
        state.score(ids[:17])
    state.close()


def test_onnx_decode_never_runs_a_one_position_forward_and_drafts_change_nothing(
        tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a position's row is the same in every forward of 2+ positions (exact_rows),
    every decode forward scores 2+ positions (a guess beside a token with no draft), so
    plain, lookup and a partly wrong prediction give the same reply token for token."""
    from slmchat.engine.generation.backends.onnx import OnnxState, exact_rows
    from slmchat.engine.generation.speculative import PredictionDrafter
    from slmchat.engine.runtimes import backend_for, runtime_of
    from slmchat.engine.runtimes import load as chat_load

    lm = chat_load(ModelSpec(path=str(tiny_llama_dir)))
    if not exact_rows(lm.model):
        pytest.skip("this CPU's ONNX Runtime kernels give a position different logits in "
                    "forwards of different widths; onnx does not speculate here")
    assert runtime_of(lm.info).speculates(lm)
    widths: list[int] = []
    extend, score = OnnxState.extend, OnnxState.score

    def spy_extend(self, ids):
        widths.append(len(ids))
        return extend(self, ids)

    def spy_score(self, ids):
        widths.append(len(ids))
        return score(self, ids)

    monkeypatch.setattr(OnnxState, "extend", spy_extend)
    monkeypatch.setattr(OnnxState, "score", spy_score)
    backend = backend_for(lm)
    ids = lm.tokenizer(CORPUS[:300])["input_ids"]
    plain, plain_last = _run(backend, lm, ids, GREEDY)
    assert widths and 1 not in widths, widths
    assert plain_last.speculative is None and plain_last.drafted == 0  # guesses are not drafts
    reply = _reply_ids(lm, backend, ids, GREEDY)
    looked, last = _run(backend, lm, ids, GREEDY, LookupDrafter([]))
    assert looked == plain and last.speculative == "lookup"
    wrong = [t for t in range(5, 400) if t not in reply][:20]
    guessed, last = _run(backend, lm, ids, GREEDY, PredictionDrafter(reply[:6] + wrong, len(ids)))
    assert guessed == plain and last.accepted >= 5 and last.drafted > last.accepted
    assert 1 not in widths


def test_the_row_probe_runs_once_per_copy_and_machine(tiny_llama_dir: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """exact_rows keeps its verdict beside the copy, keyed by CPU, runtime version and
    threads: a second load (a cold start) reads it instead of probing; other threads
    probe again."""
    import json

    from slmchat.engine.generation.backends import onnx as onnx_backend
    from slmchat.engine.runtimes import load as chat_load

    lm = chat_load(ModelSpec(path=str(tiny_llama_dir)))
    verdict = onnx_backend.exact_rows(lm.model)
    store = json.loads((lm.model.folder / onnx_backend.ROWS_FILE).read_text())
    assert store[onnx_backend._machine_key(lm.model)] is verdict
    probed: list[int] = []
    monkeypatch.setattr(onnx_backend, "_probe_rows", lambda model: probed.append(1) or verdict)
    again = chat_load(ModelSpec(path=str(tiny_llama_dir)))
    assert again.model is not lm.model and onnx_backend.exact_rows(again.model) is verdict
    assert probed == []
    # A thread count no earlier load on this copy probed (other tests share the copy and
    # may have run it with fewer or more threads than this machine's default).
    seen = json.loads((again.model.folder / onnx_backend.ROWS_FILE).read_text())
    threads = again.model.threads + 1
    while any(key.endswith(f"-threads{threads}") for key in seen):
        threads += 1
    again.model.set_threads(threads)
    onnx_backend.exact_rows(again.model)
    assert probed == [1]
    stored = json.loads((again.model.folder / onnx_backend.ROWS_FILE).read_text())
    assert stored[onnx_backend._machine_key(again.model)] is verdict
