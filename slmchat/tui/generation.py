"""Pure helpers for a chat turn: history -> engine messages, provenance, statuses."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from slmchat.engine.generation.decode import CancelToken, GenerationChunk
from slmchat.engine.generation.prompting import ChatMessage
from slmchat.engine.generation.reasoning import DEFAULT_MARKERS
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.generation.toolcalls import ToolPlan, stored_call_turns
from slmchat.engine.model.remote import is_remote_kind
from slmchat.engine.model.spec import ModelInfo
from slmchat.engine.store.provenance import STATUS_FOR_FINISH as STATUS_FOR_FINISH
from slmchat.engine.store.provenance import ModelRecord, Provenance, reply_provenance
from slmchat.engine.store.store import StoredMessage

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
    # Tool calls (screens/tool_calls.py): whether the MCP servers' tools may be offered,
    # how many calls this turn made before this reply, and (set in the worker) the plan
    # the model was offered and the tools' "server.name" keys.
    offer_tools: bool = False
    tool_chain: int = 0
    tools: ToolPlan | None = None
    tool_keys: tuple[str, ...] = ()
    thinking: bool | None = None  # enable_thinking for the model's template (None: default)
    initial_reasoning: str = ""  # a continued reply's reasoning so far
    cancel: CancelToken = field(default_factory=CancelToken)
    started: float = field(default_factory=time.time)


def chat_messages(
    history: Sequence[StoredMessage], system_prompt: str | None, continued: int | None = None,
) -> list[ChatMessage]:
    """Engine messages for a conversation; empty replies (never answered) are skipped.

    Earlier replies go in without their reasoning (reasoning models' templates drop it
    too); the reply being ``continued`` (its id) keeps it in its markers, so a reply cut
    while thinking goes on thinking."""
    out: list[ChatMessage] = []
    if system_prompt and system_prompt.strip():
        out.append(ChatMessage("system", system_prompt))
    for m in history:
        if m.role == "assistant" and m.tool_call:
            out += stored_call_turns(m.tool_call)  # a denied call: nothing
            continue
        if m.role == "assistant" and m.id == continued and m.reasoning:
            out.append(ChatMessage("assistant", with_reasoning(m.reasoning, m.content)))
            continue
        if m.role == "assistant" and not m.content:
            continue
        if m.role in ("user", "assistant"):
            out.append(ChatMessage(m.role, m.content))  # type: ignore[arg-type]
    return out


def with_reasoning(reasoning: str, answer: str) -> str:
    """A reply written out whole again, its reasoning in ``<think>`` markers (left open
    when no answer followed it yet)."""
    markers = DEFAULT_MARKERS
    if not answer:
        return f"{markers.open}\n{reasoning}"
    return f"{markers.open}\n{reasoning}\n{markers.close}\n\n{answer}"


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


def _record(model: ModelRecord | dict[str, Any]) -> ModelRecord:
    return model if isinstance(model, ModelRecord) else ModelRecord.from_dict(model)


def model_record(info: ModelInfo) -> dict[str, Any]:
    """The model part of a reply's provenance: what identifies the weights that wrote it."""
    return ModelRecord.of(info).to_dict()


def model_label(model: ModelRecord | dict[str, Any]) -> str:
    """``ModelInfo.label`` of a recorded model: "name (dtype quant, device, onnx)"; records
    from before ``runtime_tag`` was stored take the tag of the runtime they name."""
    from slmchat.engine import runtimes

    rec = _record(model)
    extra = "" if rec.quant == "none" else f" {rec.quant}"
    tag = rec.runtime_tag
    if tag is None:
        tag = runtimes.REGISTRY[rec.runtime].tag if rec.runtime in runtimes.REGISTRY else ""
    runtime = f", {tag}" if tag else ""
    return f"{rec.name} ({rec.dtype}{extra}, {rec.device}{runtime})"


def weights_note(model: ModelRecord | dict[str, Any]) -> str:
    """The weights' identity, short: "fp 1a2b3c4d", "+ lora 5e6f7a8b" for an adapter
    (whose base fingerprint is the base model's), "· onnx 9c0d…" for the converted copy
    that ran (a tuned copy differs there); a remote model: "remote HOST" and the server's
    version where it gave one (its weights are not here to fingerprint)."""
    rec = _record(model)
    if is_remote_kind(rec.kind):
        version = f" · {rec.fingerprint}" if rec.fingerprint else ""
        return f"remote {rec.device or '?'}{version}"
    parts = [f"fp {rec.fingerprint[:8]}"]
    if rec.adapter_fingerprint:
        parts.append(f"+ lora {rec.adapter_fingerprint[:8]}")
    elif rec.adapter:
        parts.append("+ lora")
    if rec.runtime_copy:
        parts.append(f"· onnx {rec.runtime_copy[:8]}")
    return " ".join(parts)


def same_weights(model: ModelRecord | dict[str, Any], info: ModelInfo) -> bool:
    """Whether the recorded ``model`` is the one ``info`` describes (base, adapter and
    converted copy); a record written before adapters were fingerprinted compares by
    adapter path."""
    rec, now = _record(model), ModelRecord.of(info)
    if rec.fingerprint and rec.fingerprint != now.fingerprint:
        return False
    if rec.adapter != now.adapter:
        return False
    if rec.adapter_fingerprint and now.adapter_fingerprint \
            and rec.adapter_fingerprint != now.adapter_fingerprint:
        return False
    return not (rec.runtime_copy and now.runtime_copy and rec.runtime_copy != now.runtime_copy)


def provenance(
    job: ReplyJob, last: GenerationChunk | None, status: str, error: str | None
) -> dict[str, Any]:
    """What produced this reply, as the store keeps it (``engine/store/provenance``:
    the writer the server's log uses too)."""
    previous = Provenance.from_dict(job.previous) if job.continue_last and job.previous \
        else None
    return reply_provenance(
        info=job.info, params=job.params, last=last, status=status, started=job.started,
        # The system prompt this reply was given ("" = none): it can change between turns.
        system_prompt=next((m.content for m in job.messages if m.role == "system"), ""),
        error=error,
        # which tools the model was offered (the call: the worker)
        tools={"offered": list(job.tool_keys), "called": None} if job.tools is not None else None,
        thinking=job.thinking, retrieval=job.retrieval, previous=previous,
    ).to_dict()
