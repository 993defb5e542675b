"""A GGUF file opened by llama.cpp (llama-cpp-python): the model and its tokenizer.

The file is memory-mapped in place (no conversion, no copy, no torch). What generation
reads from a model (``config``, ``generation_config``, end-of-turn ids) and from a
tokenizer (``__call__``, ``decode``, ``apply_chat_template``, special tokens) comes from the
GGUF metadata and llama.cpp's vocabulary, so prompting, the text layer and the prompt
inspector work on it as on the other runtimes. The chat template is rendered by the same
sandboxed Jinja environment as the lite path (lite._compile_template), never by
llama-cpp-python's own chat handlers.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from slmchat.engine.model.lite import _compile_template, render_chat
from slmchat.errors import ModelLoadError

# llama_vocab_get_attr bits (llama.h: LLAMA_TOKEN_ATTR_*)
_ATTR_CONTROL = 1 << 3
_ATTR_USER_DEFINED = 1 << 4


def import_llama_cpp() -> Any:
    """``llama_cpp``, imported so that llama.cpp's OpenMP threads keep their default wait.

    slmchat sets OMP_WAIT_POLICY=PASSIVE at start (offline.ensure_offline) for torch's
    threads, and libgomp reads it once, when it loads. llama.cpp's threads meet at a
    barrier after every operator, and a token of a small model is hundreds of short
    operators: with PASSIVE, every barrier sleeps and wakes. Measured 2026-12-07 (AMD EPYC,
    2 idle cores, the default model's GGUF, llama-cpp-python's own loop, 2 threads):
    44 tok/s with PASSIVE, 120-125 without. The llamacpp runtime already fits its threads to
    the cores other processes leave free (a busy machine gets 1 thread, which never
    waits), so it imports llama.cpp without the default slmchat put there. A user's own
    OMP_WAIT_POLICY is kept. If torch is already imported, its libgomp (the same
    libgomp.so.1) is loaded with PASSIVE and this changes nothing; a torch imported after
    llama.cpp shares llama.cpp's libgomp and its default policy.
    """
    if "llama_cpp" in sys.modules:
        return sys.modules["llama_cpp"]
    ours = (os.environ.get("SLMCHAT_OMP_DEFAULTED") == "1"
            and os.environ.get("OMP_WAIT_POLICY") == "PASSIVE")
    if ours:
        del os.environ["OMP_WAIT_POLICY"]
    try:
        import llama_cpp
    finally:
        if ours:
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return llama_cpp


def unavailable() -> str | None:
    """Why llama-cpp-python cannot be used here (None when it can)."""
    try:
        import_llama_cpp()
    except Exception as exc:  # not installed, or a build that does not load on this CPU
        return f"llama-cpp-python is not usable here ({type(exc).__name__}: {str(exc)[:120]})"
    return None


def _quiet_logs(lib: Any) -> None:
    """llama.cpp logs every load to stderr; keep the terminal clean (warnings come
    back as one line from us)."""
    if getattr(_quiet_logs, "done", False):
        return

    @lib.llama_log_callback
    def _drop(level: int, text: bytes, user_data: Any) -> None:
        return None

    lib.llama_log_set(_drop, None)
    _quiet_logs.done = True  # type: ignore[attr-defined]
    _quiet_logs.callback = _drop  # type: ignore[attr-defined]  # keep it alive


class LlamaCppModel:
    """One llama.cpp model + context, sized to ``n_ctx`` tokens."""

    def __init__(self, path: Path, n_ctx: int, threads: int) -> None:
        llama_cpp = import_llama_cpp()
        _quiet_logs(llama_cpp)
        self.lib = llama_cpp
        self.path = path
        # Flash attention, as llama.cpp's own tools choose on CPU: the 1k-token prompt of
        # the default model's GGUF is read 16 % faster (2.94 against 3.50 s) and decode is
        # unchanged or a little faster (README, llamacpp runtime). A model whose attention
        # llama.cpp cannot run that way gets a context without it.
        self.flash_attn = True
        try:
            try:
                self.llama = self._open(llama_cpp, path, n_ctx, threads, flash_attn=True)
            except ValueError as exc:
                if "llama_context" not in str(exc):  # the file, not the context
                    raise
                self.flash_attn = False
                self.llama = self._open(llama_cpp, path, n_ctx, threads, flash_attn=False)
        except Exception as exc:  # llama.cpp says only "Failed to load model from file"
            raise ModelLoadError(f"llama.cpp cannot load {path}: {exc}") from exc
        self.threads = threads
        self.owner: Any = None  # the decode state that holds the context's KV cells
        self.metadata: dict[str, str] = dict(self.llama.metadata)
        vocab = self.llama._model.vocab
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(vocab))
        arch = self.metadata.get("general.architecture", "")
        eos = llama_cpp.llama_vocab_eos(vocab)
        bos = llama_cpp.llama_vocab_bos(vocab)
        self.end_ids = tuple(t for t in {eos, llama_cpp.llama_vocab_eot(vocab)} if t >= 0)
        self.config = SimpleNamespace(
            eos_token_id=eos if eos >= 0 else None, bos_token_id=bos if bos >= 0 else None,
            vocab_size=self.n_vocab, model_type=arch,
            max_position_embeddings=int(self.llama.n_ctx()),
            n_ctx_train=int(self.llama._model.n_ctx_train()),
            num_hidden_layers=int(self.metadata.get(f"{arch}.block_count") or 0),
        )
        self.generation_config = self.config
        self.n_params = int(self.llama._model.n_params())
        self.size_bytes = int(self.llama._model.size())

    @staticmethod
    def _open(llama_cpp: Any, path: Path, n_ctx: int, threads: int, flash_attn: bool) -> Any:
        return llama_cpp.Llama(
            model_path=str(path), n_ctx=n_ctx, n_batch=512, n_ubatch=512,
            n_threads=threads, n_threads_batch=threads, use_mmap=True,
            logits_all=False, verbose=False, flash_attn=flash_attn,
        )

    @property
    def context_length(self) -> int:
        return int(self.config.max_position_embeddings)

    def claim(self, state: Any) -> None:
        self.owner = state

    def release(self, state: Any) -> None:
        if self.owner is state:
            self.owner = None

    def set_threads(self, threads: int) -> None:
        if threads != self.threads:
            self.llama._ctx.set_n_threads(threads, threads)
            self.threads = threads

    def eval(self) -> LlamaCppModel:
        return self

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.llama.close()


class LlamaCppTokenizer:
    """The subset of a transformers tokenizer that prompting and generation use, over
    llama.cpp's vocabulary and the GGUF's chat template."""

    def __init__(self, model: LlamaCppModel) -> None:
        self._model = model
        self._vocab = model.llama._model.vocab
        lib = model.lib
        meta = model.metadata
        template = meta.get("tokenizer.chat_template")
        self.chat_template: str | None = template if isinstance(template, str) and template else None
        self.eos_token_id = model.config.eos_token_id
        self.bos_token_id = model.config.bos_token_id
        self.eos_token = self._text(self.eos_token_id)
        self.bos_token = self._text(self.bos_token_id)
        self.unk_token: str | None = None
        self.pad_token = self.eos_token
        self.pad_token_id = self.eos_token_id
        self._add_bos = bool(lib.llama_vocab_get_add_bos(self._vocab))
        self._template: Any = None
        self._special: list[str] | None = None

    def _text(self, token: int | None) -> str | None:
        if token is None or token < 0:
            return None
        return str(self._model.lib.llama_vocab_get_text(self._vocab, token).decode("utf-8", "replace"))

    def __len__(self) -> int:
        return self._model.n_vocab

    def llg_tokenizer(self, eos: list[int]) -> Any:
        """llguidance's tokenizer over llama.cpp's vocabulary (constrained decoding)."""
        from llguidance.llamacpp import lltokenizer_from_vocab

        return lltokenizer_from_vocab(self._vocab, n_vocab=self._model.n_vocab, eos_token=eos or None)

    @property
    def all_special_tokens(self) -> list[str]:
        """Control and user-defined tokens (the GGUF's special tokens), bos and eos."""
        if self._special is None:
            lib = self._model.lib
            found = {self._text(i) for i in range(self._model.n_vocab)
                     if lib.llama_vocab_get_attr(self._vocab, i) & (_ATTR_CONTROL | _ATTR_USER_DEFINED)}
            found.update((self.bos_token, self.eos_token))
            self._special = sorted(t for t in found if t)
        return self._special

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        data = text.encode("utf-8", "surrogatepass")
        ids = self._model.llama.tokenize(data, add_bos=add_special_tokens and self._add_bos,
                                         special=True)
        return {"input_ids": [int(i) for i in ids]}

    def decode(self, ids: Any, skip_special_tokens: bool = False) -> str:
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        if not ids:
            return ""
        raw = self._model.llama.detokenize([int(i) for i in ids], special=not skip_special_tokens)
        return raw.decode("utf-8", "replace")

    def apply_chat_template(self, messages: list[dict[str, str]], tokenize: bool = False,
                            add_generation_prompt: bool = False,
                            continue_final_message: bool = False, **variables: Any) -> Any:
        if not self.chat_template:
            raise ValueError("this GGUF file has no chat template")
        if self._template is None:
            self._template = _compile_template(self.chat_template)
        special = {k: v for k, v in (("bos_token", self.bos_token), ("eos_token", self.eos_token))
                   if v is not None}
        text = render_chat(self._template, messages, add_generation_prompt,
                           continue_final_message, {**variables, **special})
        return self(text, add_special_tokens=False)["input_ids"] if tokenize else text


def default_threads() -> int:
    return max(1, min(os.cpu_count() or 1, 8))
