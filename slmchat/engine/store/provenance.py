"""What wrote a reply: one typed record, written by the app and the server alike.

``Provenance`` is stored as the message's ``provenance`` JSON (so SQL such as
``json_extract(provenance, '$.curation.rating')`` and the JSON export keep working) and
read back with ``Provenance.from_dict``, a tolerant reader: every row written since the
first release reads, a missing field takes its "not recorded" value, and keys it does
not know are kept (``extra``) and written back unchanged.

``reply_provenance`` is the one writer: the app's chat and compare view
(``tui/generation.provenance``) and ``slmchat serve --log-conversations``
(``server/convlog.py``) both call it, so a reply records the same fields whoever wrote it.

``finish_reason`` holds the message's stored status -- how its text ended: "done",
"length", "stopped" or "error" (``STATUS_FOR_FINISH`` maps the engine's reasons to it),
the same word as the message's ``status`` column. Rows the server wrote before version
2 held the engine's reason ("stop", "cancelled"); schema step 8 rewrote them and the
reader maps any that remain (a JSON export made before).

Versions: 1 = every row written before the record was typed (no ``version`` key);
2 = this module (server rows gained ``runtime``, ``runtime_copy``, ``system_prompt``,
``reasoning_tokens``; ``finish_reason`` is a status everywhere).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from slmchat.engine.generation.decode import GenerationChunk
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model.files import fingerprint
from slmchat.engine.model.spec import ModelInfo

PROVENANCE_VERSION = 2

# engine finish_reason -> stored message status (what ``finish_reason`` records)
STATUS_FOR_FINISH = {"stop": "done", "length": "length", "cancelled": "stopped", "error": "error"}


def status_of(finish: str | None) -> str:
    """A recorded ``finish_reason`` as a stored status: statuses pass, the engine's
    reasons of version-1 server rows are mapped ("stop" -> "done", "cancelled" ->
    "stopped"), anything else is kept as it is."""
    if finish in ("stop", "cancelled"):
        return STATUS_FOR_FINISH[finish]
    return finish or ""


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _dict(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, dict) else None


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


@dataclass(frozen=True)
class ModelRecord:
    """The model part of a reply's provenance: what identifies the weights that wrote it.

    ``runtime`` is "" and ``runtime_tag`` None in rows written before they were recorded
    (server rows before version 2, app rows before runtimes)."""

    name: str = "?"
    path: str = ""
    fingerprint: str = ""
    adapter: str | None = None
    adapter_fingerprint: str | None = None
    quant: str = "none"
    dtype: str = "?"
    device: str = "?"
    kind: str = ""
    runtime: str = ""
    runtime_copy: str = ""
    runtime_tag: str | None = None

    @classmethod
    def of(cls, info: ModelInfo) -> ModelRecord:
        return cls(name=info.name, path=info.path, fingerprint=info.fingerprint,
                   adapter=info.adapter or None,
                   adapter_fingerprint=adapter_fingerprint(info.adapter),
                   quant=info.quant, dtype=info.dtype, device=info.device, kind=info.kind,
                   runtime=info.runtime, runtime_copy=info.runtime_copy,
                   runtime_tag=info.runtime_tag)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelRecord:
        def text(key: str, default: str) -> str:
            value = data.get(key)
            return value if isinstance(value, str) else default

        return cls(name=text("name", "?"), path=text("path", ""),
                   fingerprint=text("fingerprint", ""), adapter=_str(data.get("adapter")) or None,
                   adapter_fingerprint=_str(data.get("adapter_fingerprint")) or None,
                   quant=text("quant", "none") or "none", dtype=text("dtype", "?"),
                   device=text("device", "?"), kind=text("kind", ""),
                   runtime=text("runtime", ""), runtime_copy=text("runtime_copy", ""),
                   runtime_tag=_str(data.get("runtime_tag")))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# One generation pass of a reply (a continued reply has several, in ``segments``).
SEGMENT_KEYS = ("seed", "prompt_tokens", "cached_tokens", "new_tokens", "reasoning_tokens",
                "ttft_s", "prefill_tps", "decode_tps", "duration_s", "finish_reason",
                "started_at", "error", "served_by", "speculative")


@dataclass(frozen=True)
class Provenance:
    """What produced a reply: model identity, sampling, seed, counts and timings.

    A field that is None was not recorded (a row from before it existed, or a record
    that holds only curation marks); the writer fills every core field. The counts and
    timings are the last pass's (a continued reply lists every pass in ``segments``;
    ``new_tokens`` and ``reasoning_tokens`` are then their sums)."""

    version: int = PROVENANCE_VERSION
    model: ModelRecord | None = None
    sampling: dict[str, Any] | None = None  # SamplingParams' fields, without stop
    # The system prompt the reply was given ("" = none); None: not recorded (old rows).
    system_prompt: str | None = None
    seed: int | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    new_tokens: int | None = None
    reasoning_tokens: int | None = None
    ttft_s: float | None = None
    prefill_tps: float | None = None
    decode_tps: float | None = None
    duration_s: float | None = None
    finish_reason: str = ""  # the stored status: done | length | stopped | error
    started_at: float | None = None
    error: str | None = None
    served_by: str | None = None  # a remote server's system_fingerprint
    speculative: dict[str, Any] | None = None  # {"mode", "drafted", "accepted"}
    # Who asked: {"api", "endpoint", "client"} for a server request; None in the app.
    source: dict[str, Any] | None = None
    tools: dict[str, Any] | None = None  # {"offered": [...], "called": key or None}
    thinking: bool | None = None  # the thinking switch as the user set it
    retrieval: dict[str, Any] | None = None  # attached files' passages in the prompt
    segments: tuple[dict[str, Any], ...] = ()  # a continued reply's passes
    compare: dict[str, Any] | None = None  # {"side", "schedule"} of a compare-view reply
    curation: dict[str, Any] | None = None  # good/bad marks, the original of an edit
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know

    # Written even when None: what every reply records, from the app or the server.
    CORE = ("version", "model", "sampling", "system_prompt", "seed", "prompt_tokens",
            "cached_tokens", "new_tokens", "reasoning_tokens", "ttft_s", "prefill_tps",
            "decode_tps", "duration_s", "finish_reason", "started_at")

    @property
    def greedy(self) -> bool:
        return (self.sampling or {}).get("temperature") == 0

    @property
    def status(self) -> str:
        return status_of(self.finish_reason)

    @property
    def rating(self) -> str | None:
        value = (self.curation or {}).get("rating")
        return value if value in ("good", "bad") else None

    @property
    def original(self) -> str | None:
        """The model's own text of a reply the user edited, or None."""
        value = (self.curation or {}).get("original")
        return value if isinstance(value, str) else None

    def segment(self) -> dict[str, Any]:
        """This reply's own pass, as a ``segments`` entry."""
        values = self.to_dict()
        return {k: values[k] for k in SEGMENT_KEYS if k in values}

    def with_curation(self, **changes: Any) -> Provenance:
        """A copy with ``curation`` updated (a None value removes the key)."""
        cur = dict(self.curation or {})
        for key, value in changes.items():
            if value is None:
                cur.pop(key, None)
            else:
                cur[key] = value
        return replace(self, curation=cur)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Provenance:
        """A stored record, of any version; a field it lacks takes its "not recorded"
        value and the engine reasons of version-1 server rows become statuses."""
        data = data if isinstance(data, Mapping) else {}
        model = data.get("model")
        known = {f.name for f in fields(cls)} - {"extra"}
        segments = data.get("segments")
        thinking = data.get("thinking")
        return cls(
            version=_int(data.get("version")) or 1,
            model=ModelRecord.from_dict(model) if isinstance(model, Mapping) else None,
            sampling=_dict(data.get("sampling")),
            system_prompt=_str(data.get("system_prompt")),
            seed=_int(data.get("seed")),
            prompt_tokens=_int(data.get("prompt_tokens")),
            cached_tokens=_int(data.get("cached_tokens")),
            new_tokens=_int(data.get("new_tokens")),
            reasoning_tokens=_int(data.get("reasoning_tokens")),
            ttft_s=_num(data.get("ttft_s")),
            prefill_tps=_num(data.get("prefill_tps")),
            decode_tps=_num(data.get("decode_tps")),
            duration_s=_num(data.get("duration_s")),
            finish_reason=status_of(_str(data.get("finish_reason"))),
            started_at=_num(data.get("started_at")),
            error=_str(data.get("error")),
            served_by=_str(data.get("served_by")),
            speculative=_dict(data.get("speculative")),
            source=_dict(data.get("source")),
            tools=_dict(data.get("tools")),
            thinking=thinking if isinstance(thinking, bool) else None,
            retrieval=_dict(data.get("retrieval")),
            segments=tuple(dict(s, finish_reason=status_of(_str(s.get("finish_reason"))))
                           if "finish_reason" in s else dict(s)
                           for s in segments if isinstance(s, dict))
            if isinstance(segments, list) else (),
            compare=_dict(data.get("compare")),
            curation=_dict(data.get("curation")),
            extra={k: v for k, v in data.items() if k not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON the store keeps: the core fields always, the others when set."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if f.name == "model":
                value = value.to_dict() if value is not None else None
            elif f.name == "segments":
                value = [dict(s) for s in value] if value else None
            if value is not None or f.name in self.CORE:
                out[f.name] = value
        return {**self.extra, **out}


def reply_provenance(
    *, info: ModelInfo | None, params: SamplingParams, last: GenerationChunk | None,
    status: str, started: float, system_prompt: str, error: str | None = None,
    source: dict[str, Any] | None = None, tools: dict[str, Any] | None = None,
    thinking: bool | None = None, retrieval: dict[str, Any] | None = None,
    previous: Provenance | None = None,
) -> Provenance:
    """The provenance of a reply that ended with ``status`` after ``last``: the one
    writer of the record (the app's chat and compare view, the server's log).

    ``previous``: the provenance of the reply this pass continued; its passes go into
    ``segments`` with this one, and its sources stay when none were given."""
    prov = Provenance(
        model=ModelRecord.of(info) if info is not None else None,
        sampling={k: v for k, v in asdict(params).items() if k != "stop"},
        system_prompt=system_prompt,
        seed=last.seed if last else params.seed,
        prompt_tokens=last.prompt_tokens if last else None,
        cached_tokens=last.cached_tokens if last else None,
        new_tokens=last.new_tokens if last else 0,
        reasoning_tokens=last.reasoning_tokens if last else 0,
        ttft_s=last.ttft_s if last else None,
        prefill_tps=last.prefill_tps if last else None,
        decode_tps=last.decode_tps if last else None,
        duration_s=round(time.time() - started, 3),
        finish_reason=status,
        started_at=started,
        error=error or None,
        served_by=(last.served_by or None) if last is not None else None,
        speculative={"mode": last.speculative, "drafted": last.drafted,
                     "accepted": last.accepted} if last is not None and last.speculative else None,
        source=source, tools=tools, thinking=thinking,
        retrieval=retrieval if retrieval is not None else (
            previous.retrieval if previous is not None else None),
    )
    if previous is None:
        return prov
    segments = [*(previous.segments or (previous.segment(),)), prov.segment()]
    return replace(prov, segments=tuple(segments),
                   new_tokens=sum(int(s.get("new_tokens") or 0) for s in segments),
                   reasoning_tokens=sum(int(s.get("reasoning_tokens") or 0) for s in segments))
