"""Pure helpers for a chat turn: history -> engine messages, provenance, statuses."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slmchat.engine.generation.decode import CancelToken, GenerationChunk
from slmchat.engine.generation.prompting import ChatMessage
from slmchat.engine.generation.reasoning import DEFAULT_MARKERS
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.generation.toolcalls import ToolPlan, stored_call_turns
from slmchat.engine.model.files import fingerprint
from slmchat.engine.model.remote import is_remote_kind
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


@functools.lru_cache(maxsize=32)
def _adapter_fp(files: tuple[tuple[str, int, int], ...]) -> str:
    return fingerprint([Path(name) for name, _size, _mtime in files])


def adapter_fingerprint(adapter: str | None) -> str | None:
    """The fingerprint of a LoRA adapter's weights, or None (no adapter, unreadable).

    ``ModelInfo.fingerprint`` is the base checkpoint's: a base model and its tuned
    adapter have the same one, which is why a base-vs-tuned compare showed one
    fingerprint on both sides. Cached by file name, size and mtime."""
    if not adapter:
        return None
    try:
        files = sorted(Path(adapter).expanduser().glob("*.safetensors"))
        key = tuple((str(f), (st := f.stat()).st_size, st.st_mtime_ns) for f in files)
        return _adapter_fp(key) if key else None
    except OSError:
        return None


def model_record(info: ModelInfo) -> dict[str, Any]:
    """The model part of a reply's provenance: what identifies the weights that wrote it."""
    return {
        "name": info.name, "path": info.path, "fingerprint": info.fingerprint,
        "adapter": info.adapter, "adapter_fingerprint": adapter_fingerprint(info.adapter),
        "quant": info.quant, "dtype": info.dtype, "device": info.device, "kind": info.kind,
        "runtime": info.runtime, "runtime_copy": info.runtime_copy,
        "runtime_tag": info.runtime_tag,
    }


def model_label(model: dict[str, Any]) -> str:
    """``ModelInfo.label`` of a recorded model: "name (dtype quant, device, onnx)"; records
    from before ``runtime_tag`` was stored take the tag of the runtime they name."""
    from slmchat.engine import runtimes

    quant = model.get("quant") or "none"
    extra = "" if quant == "none" else f" {quant}"
    name = str(model.get("runtime") or "")
    tag = model.get("runtime_tag")
    if tag is None:
        tag = runtimes.REGISTRY[name].tag if name in runtimes.REGISTRY else ""
    runtime = f", {tag}" if tag else ""
    return f"{model.get('name', '?')} ({model.get('dtype', '?')}{extra}, " \
           f"{model.get('device', '?')}{runtime})"


def weights_note(model: dict[str, Any]) -> str:
    """The weights' identity, short: "fp 1a2b3c4d", "+ lora 5e6f7a8b" for an adapter
    (whose base fingerprint is the base model's), "· onnx 9c0d…" for the converted copy
    that ran (a tuned copy differs there); a remote model: "remote HOST" and the server's
    version where it gave one (its weights are not here to fingerprint)."""
    if is_remote_kind(model.get("kind")):
        version = f" · {model['fingerprint']}" if model.get("fingerprint") else ""
        return f"remote {model.get('device') or '?'}{version}"
    parts = [f"fp {str(model.get('fingerprint') or '')[:8]}"]
    if model.get("adapter_fingerprint"):
        parts.append(f"+ lora {str(model['adapter_fingerprint'])[:8]}")
    elif model.get("adapter"):
        parts.append("+ lora")
    if model.get("runtime_copy"):
        parts.append(f"· onnx {str(model['runtime_copy'])[:8]}")
    return " ".join(parts)


def same_weights(model: dict[str, Any], info: ModelInfo) -> bool:
    """Whether the recorded ``model`` is the one ``info`` describes (base, adapter and
    converted copy); a record written before adapters were fingerprinted compares by
    adapter path."""
    now = model_record(info)
    if model.get("fingerprint") not in (None, now["fingerprint"]):
        return False
    if (model.get("adapter") or None) != (now["adapter"] or None):
        return False
    for key in ("adapter_fingerprint", "runtime_copy"):
        if model.get(key) and now[key] and model[key] != now[key]:
            return False
    return True


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
        "reasoning_tokens": last.reasoning_tokens if last else 0,
        "ttft_s": last.ttft_s if last else None,
        "prefill_tps": last.prefill_tps if last else None,
        "decode_tps": last.decode_tps if last else None,
        "duration_s": round(time.time() - job.started, 3),
        "finish_reason": status,
        "started_at": job.started,
    }
    if last is not None and last.speculative:  # drafted tokens verified by the model
        segment["speculative"] = {"mode": last.speculative, "drafted": last.drafted,
                                  "accepted": last.accepted}
    if error:
        segment["error"] = error
    if last is not None and last.served_by:  # a remote server's system_fingerprint
        segment["served_by"] = last.served_by
    prov: dict[str, Any] = {
        "model": model_record(info) if info else None,
        "sampling": {k: v for k, v in asdict(job.params).items() if k != "stop"},
        # The system prompt this reply was given ("" = none): it can change between turns.
        "system_prompt": next((m.content for m in job.messages if m.role == "system"), ""),
        **segment,
    }
    if job.tools is not None:  # which tools the model was offered (the call: the worker)
        prov["tools"] = {"offered": list(job.tool_keys), "called": None}
    if job.thinking is not None:  # the model's thinking switch, as the user set it
        prov["thinking"] = job.thinking
    if job.retrieval is not None:
        prov["retrieval"] = job.retrieval
    elif job.previous and job.previous.get("retrieval"):  # a continued reply keeps its sources
        prov["retrieval"] = job.previous["retrieval"]
    if job.continue_last and job.previous:
        segments = list(job.previous.get("segments") or [_segment_of(job.previous)])
        segments.append(segment)
        prov["segments"] = segments
        prov["new_tokens"] = sum(int(s.get("new_tokens") or 0) for s in segments)
        prov["reasoning_tokens"] = sum(int(s.get("reasoning_tokens") or 0) for s in segments)
    return prov


def _segment_of(prov: dict[str, Any]) -> dict[str, Any]:
    keys = ("seed", "prompt_tokens", "cached_tokens", "new_tokens", "reasoning_tokens", "ttft_s",
            "prefill_tps", "decode_tps", "duration_s", "finish_reason", "started_at", "error",
            "served_by", "speculative")
    return {k: prov[k] for k in keys if k in prov}
