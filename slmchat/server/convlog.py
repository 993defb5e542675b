"""``--log-conversations``: each API request becomes a conversation in the app's store.

Off by default: nothing a client sends is written anywhere unless the user asked. When
on, the request's messages and the reply are stored with provenance (model, sampling,
counts, timings, which API and endpoint), so the app lists them like its own chats.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict
from typing import Any

from slmchat.engine.generation.decode import GenerationChunk
from slmchat.engine.generation.prompting import ChatMessage
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model.spec import ModelInfo
from slmchat.engine.store.store import Store

# engine finish_reason -> stored message status (as the app stores them)
STATUS_FOR_FINISH = {"stop": "done", "length": "length", "cancelled": "stopped", "error": "error"}


def _title(messages: list[ChatMessage], api: str) -> str:
    first = next((m.content for m in messages if m.role == "user" and m.content.strip()), "")
    line = next((ln.strip() for ln in first.splitlines() if ln.strip()), "request")
    line = line if len(line) <= 40 else line[:39] + "…"
    return f"[{api}] {line}"


class ConversationLog:
    """Writes finished requests to a Store (thread-safe; called from worker threads)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()

    def record(self, *, api: str, endpoint: str, client: str | None, messages: list[ChatMessage],
               reply: str, last: GenerationChunk | None, params: SamplingParams | None,
               info: ModelInfo | None, started: float) -> int:
        system = next((m.content for m in messages if m.role == "system"), "")
        provenance: dict[str, Any] = {
            "source": {"api": api, "endpoint": endpoint, "client": client},
            "model": {
                "name": info.name, "path": info.path, "fingerprint": info.fingerprint,
                "adapter": info.adapter, "quant": info.quant, "dtype": info.dtype,
                "device": info.device, "kind": info.kind,
            } if info else None,
            "sampling": {k: v for k, v in asdict(params).items() if k != "stop"} if params else None,
            "seed": last.seed if last else None,
            "prompt_tokens": last.prompt_tokens if last else None,
            "cached_tokens": last.cached_tokens if last else None,
            "new_tokens": last.new_tokens if last else 0,
            "ttft_s": last.ttft_s if last else None,
            "prefill_tps": last.prefill_tps if last else None,
            "decode_tps": last.decode_tps if last else None,
            "duration_s": round(time.time() - started, 3),
            "finish_reason": (last.finish_reason if last else None) or "error",
            "started_at": started,
        }
        if last is not None and last.speculative:
            provenance["speculative"] = {"mode": last.speculative, "drafted": last.drafted,
                                         "accepted": last.accepted}
        status = STATUS_FOR_FINISH.get(provenance["finish_reason"], "error")
        # One transaction: a failed write (a full disk) leaves no empty conversation row.
        with self._lock, self.store.transaction():
            conv = self.store.create_conversation(
                _title(messages, api), settings={"system_prompt": system} if system else {})
            for m in messages:
                if m.role != "system":
                    self.store.add_message(conv.id, m.role, m.content)
            self.store.add_message(conv.id, "assistant", reply, status=status,
                                   provenance=provenance)
        return conv.id
