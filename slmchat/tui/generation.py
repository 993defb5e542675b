"""Pure helpers for a chat turn: history -> engine messages, provenance, statuses."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from slmchat.engine.generation.decode import CancelToken, GenerationChunk
from slmchat.engine.generation.prompting import ChatMessage
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model.spec import ModelInfo
from slmchat.engine.store.store import StoredMessage

# engine finish_reason -> stored message status
STATUS_FOR_FINISH = {"stop": "done", "length": "length", "cancelled": "stopped", "error": "error"}
CONTINUABLE = ("length", "stopped", "interrupted")


@dataclass
class ReplyJob:
    """One generation: everything the worker thread needs, built on the UI thread."""

    msg_id: int
    messages: list[ChatMessage]
    params: SamplingParams
    info: ModelInfo | None
    continue_last: bool = False
    initial_text: str = ""
    previous: dict[str, Any] | None = None
    retrieval: dict[str, Any] | None = None  # passages of attached files in the prompt
    cancel: CancelToken = field(default_factory=CancelToken)
    started: float = field(default_factory=time.time)


def chat_messages(
    history: Sequence[StoredMessage], system_prompt: str | None
) -> list[ChatMessage]:
    """Engine messages for a conversation; empty replies (never answered) are skipped."""
    out: list[ChatMessage] = []
    if system_prompt and system_prompt.strip():
        out.append(ChatMessage("system", system_prompt))
    for m in history:
        if m.role == "assistant" and not m.content:
            continue
        if m.role in ("user", "assistant"):
            out.append(ChatMessage(m.role, m.content))  # type: ignore[arg-type]
    return out


# Openings that say nothing about the topic: "What is the capital of France?" is titled
# "Capital of France" (kept whole when fewer than two words would be left).
_FILLER = re.compile(
    r"^(?:(?:please|hi|hello|hey)\b[,!.]?\s*)*"
    r"(?:(?:can|could|would|will) you\s+(?:please\s+)?|tell me\s+(?:about\s+)?"
    r"|(?:(?:what|who|which) (?:is|are|was|were)|what's|who's)\s+(?:(?:the|a|an)\s+)?)?",
    re.IGNORECASE)


def title_from(text: str, width: int = 40) -> str:
    """A short conversation title from the first message (the sidebar shows ~28
    characters): its first line without filler openings or end punctuation."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "").rstrip(" ?!.:;,")
    short = _FILLER.sub("", line, count=1)
    if len(short.split()) < 2:
        short = line
    if not short:
        return "New chat"
    short = short[0].upper() + short[1:]
    if len(short) <= width:
        return short
    head = short[: width - 1]
    cut = head.rsplit(" ", 1)[0] if " " in head else head
    return cut.rstrip(" ,;:") + "…"


def provenance(
    job: ReplyJob, last: GenerationChunk | None, status: str, error: str | None
) -> dict[str, Any]:
    """What produced this reply: model identity, sampling, seed, counts and timings."""
    info = job.info
    segment: dict[str, Any] = {
        "seed": last.seed if last else job.params.seed,
        "prompt_tokens": last.prompt_tokens if last else None,
        "cached_tokens": last.cached_tokens if last else None,
        "new_tokens": last.new_tokens if last else 0,
        "ttft_s": last.ttft_s if last else None,
        "prefill_tps": last.prefill_tps if last else None,
        "decode_tps": last.decode_tps if last else None,
        "duration_s": round(time.time() - job.started, 3),
        "finish_reason": status,
        "started_at": job.started,
    }
    if error:
        segment["error"] = error
    prov: dict[str, Any] = {
        "model": {
            "name": info.name, "path": info.path, "fingerprint": info.fingerprint,
            "adapter": info.adapter, "quant": info.quant, "dtype": info.dtype,
            "device": info.device, "kind": info.kind, "runtime": info.runtime,
            "runtime_copy": info.runtime_copy,
        } if info else None,
        "sampling": {k: v for k, v in asdict(job.params).items() if k != "stop"},
        # The system prompt this reply was given ("" = none): it can change between turns.
        "system_prompt": next((m.content for m in job.messages if m.role == "system"), ""),
        **segment,
    }
    if job.retrieval is not None:
        prov["retrieval"] = job.retrieval
    elif job.previous and job.previous.get("retrieval"):  # a continued reply keeps its sources
        prov["retrieval"] = job.previous["retrieval"]
    if job.continue_last and job.previous:
        segments = list(job.previous.get("segments") or [_segment_of(job.previous)])
        segments.append(segment)
        prov["segments"] = segments
        prov["new_tokens"] = sum(int(s.get("new_tokens") or 0) for s in segments)
    return prov


def _segment_of(prov: dict[str, Any]) -> dict[str, Any]:
    keys = ("seed", "prompt_tokens", "cached_tokens", "new_tokens", "ttft_s", "prefill_tps",
            "decode_tps", "duration_s", "finish_reason", "started_at", "error")
    return {k: prov[k] for k in keys if k in prov}
