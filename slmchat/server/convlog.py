"""``--log-conversations``: each API request becomes a conversation in the app's store.

Off by default: nothing a client sends is written anywhere unless the user asked. When
on, the request's messages and the reply are stored with provenance (model, sampling,
counts, timings, which API and endpoint: ``engine/store/provenance.reply_provenance``, the
writer the app uses too), so the app lists them like its own chats.
"""

from __future__ import annotations

import threading

from slmchat.engine.generation.decode import GenerationChunk
from slmchat.engine.generation.prompting import ChatMessage
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model.spec import ModelInfo
from slmchat.engine.store.provenance import STATUS_FOR_FINISH, reply_provenance
from slmchat.engine.store.store import Store


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
        status = STATUS_FOR_FINISH.get((last.finish_reason if last else None) or "", "error")
        provenance = reply_provenance(
            info=info, params=params or SamplingParams(), last=last, status=status,
            started=started, system_prompt=system,
            source={"api": api, "endpoint": endpoint, "client": client})
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
