"""Messages posted from worker threads to the UI (the only way threads talk back)."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from slmchat.engine.generation.decode import GenerationChunk
from slmchat.engine.model.spec import ModelInfo, ModelSpec


class ModelLoaded(Message):
    """The engine finished loading ``spec``; ``info`` describes it."""

    def __init__(self, spec: ModelSpec, info: ModelInfo) -> None:
        super().__init__()
        self.spec = spec
        self.info = info


class ModelLoadFailed(Message):
    """Loading ``spec`` failed; the previous model (if any) is still loaded."""

    def __init__(self, spec: ModelSpec, error: str) -> None:
        super().__init__()
        self.spec = spec
        self.error = error


class ReplyDelta(Message):
    """New reply text. Deltas are appended in order, so they are never merged away."""

    bubble = False  # for the chat screen only

    def __init__(self, msg_id: int, text: str) -> None:
        super().__init__()
        self.msg_id = msg_id
        self.text = text


class ReplyFinished(Message):
    """The reply ended; ``status`` is done | length | stopped | error."""

    bubble = False

    def __init__(
        self, msg_id: int, status: str, last: GenerationChunk | None, error: str | None,
        provenance: dict[str, Any],
    ) -> None:
        super().__init__()
        self.msg_id = msg_id
        self.status = status
        self.last = last
        self.error = error
        self.provenance = provenance
