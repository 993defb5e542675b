"""Constrained decoding: replies that follow a JSON schema, JSON, a regex, a Lark grammar
or a list of choices, on every runtime.

llguidance (the engine behind llama.cpp's and ONNX Runtime GenAI's constraints) computes
which tokens may come next; the decode loop (decode.py) masks the logits with it before
our sampler picks, and feeds it each picked token, so temperature, top-p, seeds, stop
strings, cancel and provenance work as without a constraint. The end-of-sequence token
is allowed only where the grammar accepts, and the reply ends when the grammar can go no
further. A constraint that does not compile is one ``InvalidParameterError`` line,
raised before any token.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from slmchat.errors import InvalidParameterError

Kind = Literal["json", "json_schema", "regex", "lark", "choice"]
KINDS: tuple[str, ...] = ("json", "json_schema", "regex", "lark", "choice")
MAX_GRAMMAR_CHARS = 1_000_000
# Whitespace between JSON tokens: a newline and indentation, bounded. llguidance's default
# ("[ \n\r\t]+") let small models fill their whole token budget with tabs inside "{ }".
JSON_OPTIONS: Any = {"whitespace_flexible": True, "whitespace_pattern": r"[ \n]{0,16}"}


@dataclass(frozen=True)
class Constraint:
    """What a reply must match. ``value``: the schema (JSON text), the regex, the Lark
    grammar, or the choices joined by newlines; "" for plain JSON."""

    kind: Kind
    value: str = ""

    @staticmethod
    def choices(options: list[str]) -> Constraint:
        cleaned = [o for o in options if o]
        if not cleaned:
            raise InvalidParameterError("--choice needs at least one non-empty choice")
        return Constraint("choice", "\n".join(cleaned))

    def grammar(self) -> str:
        """The llguidance grammar (JSON text) for this constraint."""
        from llguidance import LLMatcher

        if len(self.value) > MAX_GRAMMAR_CHARS:
            raise InvalidParameterError(f"the {self.kind} constraint is too large "
                                        f"({len(self.value)} characters, at most {MAX_GRAMMAR_CHARS})")
        if self.kind == "json":
            return str(LLMatcher.grammar_from_json_schema({"type": "object"}, defaults=JSON_OPTIONS))
        if self.kind == "json_schema":
            try:
                schema = json.loads(self.value)
            except (ValueError, RecursionError) as exc:
                raise InvalidParameterError(f"the JSON schema is not valid JSON: {exc}") from exc
            if isinstance(schema, bool):
                schema = {} if schema else {"not": {}}
            if not isinstance(schema, dict):
                raise InvalidParameterError("a JSON schema is an object (or true/false)")
            try:
                return str(LLMatcher.grammar_from_json_schema(schema, defaults=JSON_OPTIONS))
            except (ValueError, TypeError) as exc:
                raise InvalidParameterError(f"bad JSON schema: {exc}") from exc
        if self.kind == "regex":
            return str(LLMatcher.grammar_from_regex(self.value))
        if self.kind == "lark":
            return str(LLMatcher.grammar_from_lark(self.value))
        if self.kind == "choice":
            options = " | ".join(json.dumps(o) for o in self.value.split("\n"))
            return str(LLMatcher.grammar_from_lark(f"start: {options}"))
        raise InvalidParameterError(f"unknown constraint kind {self.kind!r} (choose from {', '.join(KINDS)})")

    def check(self) -> None:
        """InvalidParameterError (one line) when the constraint does not compile: before a
        model is loaded or a request is queued."""
        from llguidance import LLMatcher

        problem = LLMatcher.validate_grammar(self.grammar())
        if problem:
            raise InvalidParameterError(f"the {self.kind} constraint does not compile: "
                                        f"{problem.splitlines()[0][:200]}")

    @property
    def label(self) -> str:
        """For provenance and --stats: the kind and a short digest of the value."""
        import hashlib

        digest = hashlib.sha256(self.value.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        return f"{self.kind}:{digest}" if self.value else self.kind


def ll_tokenizer(tokenizer: Any, n_vocab: int, eos: set[int]) -> Any:
    """llguidance's view of a runtime's tokenizer, built once per tokenizer (~1 s)."""
    cached = getattr(tokenizer, "_slmchat_llg", None)
    if cached is not None:
        return cached
    from llguidance import LLTokenizer

    own = getattr(tokenizer, "llg_tokenizer", None)  # the llamacpp runtime's vocabulary
    if callable(own):
        import warnings

        with warnings.catch_warnings():  # llama-cpp-python's per-token deprecation notices
            warnings.simplefilter("ignore")
            made = own(sorted(eos))
    else:
        backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tok", None)
        if backend is None:
            raise InvalidParameterError("constrained decoding needs a fast (tokenizer.json) tokenizer")
        made = LLTokenizer(backend.to_str(), n_vocab=n_vocab, eos_token=sorted(eos) or None)
    with contextlib.suppress(AttributeError):
        tokenizer._slmchat_llg = made
    return made


class Guide:
    """One reply's matcher: masks logits, consumes picked tokens."""

    def __init__(self, constraint: Constraint, tokenizer: Any, n_vocab: int, eos: set[int]) -> None:
        from llguidance import LLMatcher

        self.constraint = constraint
        self._tok = ll_tokenizer(tokenizer, n_vocab, eos)
        grammar = constraint.grammar()
        self._matcher = LLMatcher(self._tok, grammar, log_level=0)
        if self._matcher.is_error():
            raise InvalidParameterError(
                f"the {constraint.kind} constraint does not compile: "
                f"{self._matcher.get_error().splitlines()[0][:200]}")
        self._eos = sorted(eos)

    @property
    def done(self) -> bool:
        """The grammar can take no more tokens (the reply is complete)."""
        return bool(self._matcher.is_stopped())

    def allowed(self, n_logits: int) -> Any:
        """A boolean numpy array over ``n_logits`` positions: True where a token may come."""
        import numpy as np

        raw = np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8)
        bits = np.unpackbits(raw, bitorder="little").astype(bool)
        out = np.zeros(n_logits, dtype=bool)
        n = min(n_logits, bits.size)
        out[:n] = bits[:n]
        return out

    def mask(self, logits: Any) -> Any:
        """``logits`` (numpy or torch, shape (1, V)) with disallowed tokens at -inf."""
        allowed = self.allowed(int(logits.shape[-1]))
        if hasattr(logits, "masked_fill"):  # torch
            import torch

            keep = torch.from_numpy(allowed).to(logits.device).reshape(1, -1)
            return logits.masked_fill(~keep, float("-inf"))
        import numpy as np

        out = np.array(logits, dtype=np.float32, copy=True).reshape(1, -1)
        out[0, ~allowed] = -np.inf
        return out

    def consume(self, token: int) -> None:
        if not self._matcher.consume_token(int(token)):
            raise RuntimeError(f"the constraint rejected token {token}: "
                               f"{(self._matcher.get_error() or '').splitlines()[:1]}")
