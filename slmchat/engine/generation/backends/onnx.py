"""The onnx backend: ONNX Runtime GenAI's generator driven one step at a time.

We own the loop (the decode loop in decode.py): ``append_tokens`` feeds the prompt, then
each sampled token; ``get_logits`` returns the next-token logits as numpy, sampled by
npsampling (no torch anywhere on this path). The generator keeps the KV cache across
turns; ``rewind_to`` truncates it when a turn is edited or regenerated.

Memory: the copy's LM head runs on the last LOGITS_WINDOW positions of a forward only
(model/onnx_build.logits_window), so a long prefill never computes a row of logits per
prompt position, and the prompt goes in chunks so the activations of one forward stay
bounded.

Exact drafts: ONNX Runtime's one-position kernels (GroupQueryAttention's one-query path)
round differently from its several-position ones, while a position's row is the same bit
for bit in every forward of two or more positions (checked per copy and machine by
``exact_rows``). So where that holds the state asks the decode loop never to run a
one-position forward (``min_rows`` 2): a step without a draft scores a guessed next token
beside it, and speculation then changes nothing in a reply (README: speculative decoding).

The generator's KV buffer is allocated whole for ``max_length``
tokens, so it is sized to the conversation (the next power of two that holds prompt and
reply, at least MIN_CAPACITY) and grown, by re-feeding the kept tokens, when a later turn
needs more; never the model's full context by default.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slmchat.engine.generation.backends.base import ContextFull, config_stop_ids
from slmchat.engine.generation.npsampling import NumpySampler
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model.onnx import MARKER

MIN_CAPACITY = 1024
# A forward's logits output has a row per position (zeros before the logits window), so
# the chunk bounds that buffer: 128 x 49,152 floats is 25 MB for the default model. Peak
# RSS with a 1k-token chat: 668 MB with chunks of 512, 566 with 256, 475 with 128; its
# first token 1.37, 1.35 and 1.40 s.
PREFILL_CHUNK = 128


def capacity_for(total: int, context: int) -> int:
    cap = MIN_CAPACITY
    while cap < total:
        cap *= 2
    return max(1, min(cap, context))


class OnnxState:
    def __init__(self, model: Any) -> None:
        self._model = model
        self._gen: Any = None
        self._gen_of = -1  # model.generation the generator was made for
        self.capacity = 0
        self.tokens: list[int] = []

    def _new_generator(self, capacity: int) -> None:
        from slmchat.engine.model.onnx_capi import Generator

        self._gen = Generator(self._model.og, capacity)
        self._gen_of = self._model.generation
        self.capacity = capacity

    def _stale(self) -> bool:
        return self._gen is None or self._gen_of != self._model.generation

    def reserve(self, total: int) -> None:
        total = min(total, self._model.context_length)  # extend() fails past the context
        if not self._stale() and total <= self.capacity:
            return
        kept = list(self.tokens)
        self._gen = None
        self._new_generator(capacity_for(max(total, len(kept)), self._model.context_length))
        self.tokens = []
        if kept:  # a bigger buffer (or a reloaded model): feed the kept prefix again
            self._append(kept)

    def _append(self, ids: Sequence[int]) -> None:
        i = 0
        while i < len(ids):
            # no one-position chunk after a full one (its rows would round differently)
            n = PREFILL_CHUNK + 1 if len(ids) - i == PREFILL_CHUNK + 1 else PREFILL_CHUNK
            chunk = [int(t) for t in ids[i:i + n]]
            self._gen.append_tokens(chunk)
            self.tokens.extend(chunk)
            i += n

    def extend(self, ids: Sequence[int]) -> np.ndarray:
        if len(self.tokens) + len(ids) > self._model.context_length:
            raise ContextFull
        self.reserve(len(self.tokens) + len(ids))
        self._append(ids)
        return np.asarray(self._gen.get_logits(), dtype=np.float32).reshape(1, -1)

    @property
    def verifies(self) -> bool:
        return full_logits(self._model)

    @property
    def min_rows(self) -> int:
        """The fewest positions a decode forward should score (2: this copy's rows are
        the same in every forward of two or more positions, unlike one-position ones)."""
        return 2 if self.verifies and exact_rows(self._model) else 1

    def score(self, ids: Sequence[int]) -> np.ndarray:
        """Feed ``ids`` and return a row of logits per position: a copy built with
        logits for more than the last position (``last_token_logits`` false in its
        marker; at most its ``logits_window`` last positions) has them."""
        window = logits_window(self._model)
        if window and len(ids) > window:
            raise ValueError(f"{len(ids)} positions to score, the copy keeps logits for {window}")
        if len(self.tokens) + len(ids) > self._model.context_length:
            raise ContextFull
        self.reserve(len(self.tokens) + len(ids))
        self._append(ids)
        out = np.asarray(self._gen.get_output("logits"), dtype=np.float32)
        return out.reshape(-1, out.shape[-1])[-len(ids):]

    def rewind(self, n: int) -> int:
        if n >= len(self.tokens):
            return len(self.tokens)
        if n <= 0 or self._stale():
            self.reset()
            return 0
        self._gen.rewind_to(n)
        del self.tokens[n:]
        return n

    def reset(self) -> None:
        if self._gen is not None and not self._stale() and self.tokens:
            self._gen.rewind_to(0)  # keep the buffer; a new generator would allocate again
        self.tokens = []

    def close(self) -> None:
        self._gen, self.tokens, self.capacity = None, [], 0


def _marker(model: Any) -> dict[str, Any]:
    known = getattr(model, "_slmchat_marker", None)
    if known is None:
        try:
            known = json.loads((Path(model.folder) / MARKER).read_text())
        except (OSError, ValueError, AttributeError, TypeError):
            known = {}
        if not isinstance(known, dict):
            known = {}
        with contextlib.suppress(AttributeError):
            model._slmchat_marker = known
    return known


def full_logits(model: Any) -> bool:
    """Whether the copy's graph returns logits for more than the last position (every
    position, built with ``full_logits``, or the last ``logits_window``; copies of
    recipe 1 pruned the LM head to the last position)."""
    return _marker(model).get("last_token_logits") is False


def logits_window(model: Any) -> int | None:
    """How many last positions of a forward have logits (None: all of them)."""
    window = _marker(model).get("logits_window")
    return int(window) if isinstance(window, int) and window > 0 else None




ROWS_FILE = "slmchat-exact-rows.json"  # in the copy's folder: the probe's verdicts


def _machine_key(model: Any) -> str:
    """What the probe's verdict depends on: the CPU (model and instruction sets), ONNX
    Runtime GenAI's version and the thread count."""
    import hashlib
    import platform

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            info = [ln for ln in f if ln.startswith(("model name", "flags"))][:2]
        cpu += "".join(info)
    except OSError:
        pass
    try:
        from importlib.metadata import version

        ort = version("onnxruntime-genai")
    except Exception:
        ort = "?"
    digest = hashlib.sha256(cpu.encode()).hexdigest()[:16]
    return f"{platform.machine()}-{digest}-ortgenai{ort}-threads{getattr(model, 'threads', 0)}"


def exact_rows(model: Any) -> bool:
    """Whether, on this machine and copy, a position's logits are the same bit for bit
    whichever forward of two or more positions computes them: 8 tokens after a 24-token
    past, scored as 2+2+2+2 and as 3+5, compared. Probed once per copy, CPU, runtime
    version and thread count (~0.1 s), the verdict kept beside the copy so that a cold
    start does not pay it again."""
    generation = getattr(model, "generation", 0)  # a reload (other threads) asks again
    cached = getattr(model, "_slmchat_exact_rows", None)
    if cached is not None and cached[0] == generation:
        return bool(cached[1])
    key = _machine_key(model)
    store = Path(getattr(model, "folder", ".")) / ROWS_FILE
    try:
        verdicts = json.loads(store.read_text())
        known = verdicts.get(key) if isinstance(verdicts, dict) else None
    except (OSError, ValueError):
        verdicts, known = {}, None
    if not isinstance(known, bool):
        known = _probe_rows(model)
        verdicts = {**(verdicts if isinstance(verdicts, dict) else {}), key: known}
        with contextlib.suppress(OSError):  # a read-only copy probes again next time
            store.write_text(json.dumps(verdicts, indent=1))
    with contextlib.suppress(AttributeError):
        model._slmchat_exact_rows = (generation, known)
    return known


def _probe_rows(model: Any) -> bool:
    from slmchat.engine.model.onnx_capi import Generator

    try:
        vocab = int(model.config.vocab_size)
        ids = [3 + (97 * i) % max(1, vocab - 3) for i in range(32)]  # any ids the vocab has
        past, steps = ids[:24], ids[24:]
        rows = []
        for split in ((2, 2, 2, 2), (3, 5)):
            gen = Generator(model.og, 64)
            gen.append_tokens(past)
            out, at = [], 0
            for n in split:
                gen.append_tokens(steps[at:at + n])
                got = np.asarray(gen.get_output("logits"), dtype=np.float32)
                out.append(got.reshape(-1, got.shape[-1])[-n:])
                at += n
            rows.append(np.concatenate(out))
        return bool(np.array_equal(rows[0], rows[1]))
    except Exception:  # a copy that cannot take the probe verifies nothing exactly
        return False


class OnnxBackend:
    runtime = "onnx"

    def __init__(self, model: Any) -> None:
        self.model = model

    @property
    def key(self) -> int:
        return id(self.model)

    def new_state(self) -> OnnxState:
        return OnnxState(self.model)

    def sampler(self, prompt: Sequence[int], params: SamplingParams, seed: int) -> NumpySampler:
        return NumpySampler(prompt, params, seed)

    def stop_ids(self, tokenizer: Any) -> set[int]:
        return config_stop_ids(self.model, tokenizer)
