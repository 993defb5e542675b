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


class IndexProgressed(Message):
    """Indexing attached files: ``files_done`` of ``files_total`` (a burst collapses)."""

    def __init__(self, files_done: int, files_total: int, bytes_done: int,
                 bytes_total: int) -> None:
        super().__init__()
        self.files_done = files_done
        self.files_total = files_total
        self.bytes_done = bytes_done
        self.bytes_total = bytes_total

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, IndexProgressed)


class IndexFinished(Message):
    """Indexing ended; ``report`` is an IndexReport, ``error`` a one-line reason."""

    def __init__(self, report: Any, error: str | None = None) -> None:
        super().__init__()
        self.report = report
        self.error = error
