"""The text layer of the decode loop: tokens in, safe-to-show text out.

Two parts, both O(1) per token however long the reply grows (the loop they replace
re-decoded the whole reply on every token):

* ``IncrementalDetokenizer`` decodes only a short window of recent tokens (the vLLM /
  text-generation-inference "prefix offset / read offset" scheme): the text of
  ``tokens[prefix:]`` minus the text of ``tokens[prefix:read]`` is what the new tokens
  added. A window that ends in U+FFFD is an incomplete UTF-8 sequence and waits.
* ``StopFilter`` holds back the longest tail that could still become a stop string and
  ends the reply at the first stop; it only ever looks at the held-back tail plus the
  new text, never at the whole reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class IncrementalDetokenizer:
    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer
        self.tokens: list[int] = []
        self._prefix = 0  # start of the decoding window
        self._read = 0  # tokens before this have been turned into text

    def _decode(self, ids: Sequence[int]) -> str:
        return str(self._tok.decode(list(ids), skip_special_tokens=True))

    def add(self, token: int) -> str:
        """Append ``token``; return the text it completes ("" while a character is split)."""
        self.tokens.append(token)
        before = self._decode(self.tokens[self._prefix:self._read])
        after = self._decode(self.tokens[self._prefix:])
        if after.endswith("\ufffd") or len(after) <= len(before):
            return ""  # wait for the rest of a multi-byte character
        self._prefix, self._read = self._read, len(self.tokens)
        return after[len(before):]

    def flush(self) -> str:
        """Whatever text is still pending at the end (a dangling partial character dropped)."""
        if self._read >= len(self.tokens):
            return ""
        before = self._decode(self.tokens[self._prefix:self._read])
        after = self._decode(self.tokens[self._prefix:]).rstrip("\ufffd")
        self._prefix = self._read = len(self.tokens)
        return after[len(before):] if after.startswith(before) else ""


class StopFilter:
    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self._pending = ""  # text seen but not yet released (could start a stop string)
        self.stopped = False

    def _holdback(self, text: str) -> int:
        keep = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:n]):
                    keep = max(keep, n)
                    break
        return keep

    def feed(self, text: str) -> str:
        """Add new text; return the part that is safe to show now."""
        if self.stopped or not text:
            return ""
        pending = self._pending + text
        hits = [i for i in (pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped = True
            self._pending = ""
            return pending[:min(hits)]
        keep = self._holdback(pending)
        self._pending = pending[len(pending) - keep:] if keep else ""
        return pending[:len(pending) - keep]

    def flush(self) -> str:
        """At the end of a reply that never completed a stop string: release the tail."""
        out, self._pending = self._pending, ""
        return "" if self.stopped else out
