"""A scripted stand-in for slmchat.engine.session.Engine (no model, no torch)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from slmchat.engine.generation.constraints import Constraint
from slmchat.engine.generation.decode import CancelToken, GenerationChunk
from slmchat.engine.generation.prompting import ChatMessage, Prompt, PromptMode
from slmchat.engine.generation.reasoning import DEFAULT_MARKERS, opens_inside, separate
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.mcp.client import Listing, McpError, McpTool, ToolHubLike, ToolResult
from slmchat.engine.model.spec import ModelInfo, ModelSpec, Progress
from slmchat.engine.session import EngineLike
from slmchat.errors import ModelLoadError


def fake_info(name: str = "fake-model", path: str = "/models/fake") -> ModelInfo:
    return ModelInfo(
        name=name, path=path, kind="hf", architecture="FakeForCausalLM", n_params=1000,
        footprint_bytes=4000, load_time_s=0.5, context_length=2048, has_chat_template=True,
        dtype="fp32", device="cpu", quant="none", adapter=None, fingerprint="feedc0ffee123456",
    )


@dataclass
class Call:
    messages: list[ChatMessage]
    params: SamplingParams
    continue_last: bool
    reuse_cache: bool = True
    constraint: Constraint | None = None
    thinking: bool | None = None


@dataclass
class FakeEngine:
    """Replies come from ``replies`` in order, streamed word by word; a reply that starts
    with ``<think>`` has its reasoning told apart as the real engine does (reasoning.py).

    ``load_gate``: load() blocks until it is set (typing-during-load tests).
    ``pause_after``: after that many pieces, wait for ``resume`` (stop tests).
    """

    replies: list[str] = field(default_factory=list)
    load_gate: threading.Event | None = None
    fail_paths: tuple[str, ...] = ()
    load_steps: tuple[tuple[str, float], ...] = ()  # progress reported while loading
    pause_after: int | None = None
    resume: threading.Event = field(default_factory=threading.Event)
    paused: threading.Event = field(default_factory=threading.Event)
    loaded_info: ModelInfo | None = None
    calls: list[Call] = field(default_factory=list)
    loads: list[ModelSpec] = field(default_factory=list)
    cached_tokens: int = 0  # what preview_prompt says the KV cache reuses
    companion_replies: list[str] = field(default_factory=list)  # the right-hand side's
    # replies of a companion loaded from a given path (base vs tuned); else the list above
    companion_replies_by_path: dict[str, list[str]] = field(default_factory=dict)
    companion_error: str | None = None  # companion() refuses with this
    companions: list[FakeEngine] = field(default_factory=list)
    thinking_switch: bool = False  # the loaded models' templates have enable_thinking
    # Speculative decoding: the word pieces (by index, each reply) that accepted draft
    # tokens "wrote" (GenerationChunk.accepted_draft); empty: the reply did not speculate.
    accepted_pieces: frozenset[int] = frozenset()
    _current: CancelToken | None = None

    @property
    def info(self) -> ModelInfo | None:
        return self.loaded_info

    def load(self, spec: ModelSpec, progress: Progress | None = None) -> ModelInfo:
        self.loads.append(spec)
        if progress is not None:
            for text, fraction in self.load_steps:  # e.g. a first ONNX conversion
                progress(text, fraction)
        if self.load_gate is not None:
            self.load_gate.wait(10)
        if spec.path in self.fail_paths:
            raise ModelLoadError(f"model path does not exist: {spec.path}")
        name = "fake-model" if spec.path == "default" else spec.path.rsplit("/", 1)[-1]
        self.loaded_info = replace(fake_info(name, spec.path), thinking_switch=self.thinking_switch)
        return self.loaded_info

    def preview_prompt(
        self, messages: Sequence[ChatMessage], params: SamplingParams,
        mode: PromptMode = "chat", continue_last: bool = False, detail: bool = False,
        thinking: bool | None = None,
    ) -> Prompt:
        text = "\n".join(f"<|{m.role}|>{m.content}" for m in messages) + "\n<|assistant|>"
        ids = list(range(len(text.split())))
        counts = tuple(len(f"<|{m.role}|>{m.content}".split()) for m in messages)
        return Prompt(input_ids=ids, text=text, prompt_tokens=len(ids), context_length=2048,
                      dropped_messages=0, truncated=False, stop=(), format="template",
                      kept=tuple(messages), message_tokens=counts if detail else (),
                      generation_prompt_tokens=1 if detail else 0,
                      pieces=tuple(text.split()) if detail else (),
                      special_tokens=("<|user|>", "<|assistant|>", "<|system|>"),
                      cached_tokens=self.cached_tokens)

    def cancel(self) -> None:
        if self._current is not None:
            self._current.cancel()

    def stream_chat(
        self, messages: Sequence[ChatMessage], params: SamplingParams,
        cancel: CancelToken | None = None, mode: PromptMode = "chat", continue_last: bool = False,
        constraint: Constraint | None = None, reuse_cache: bool = True,
        thinking: bool | None = None, prediction: str | None = None,
    ) -> Iterator[GenerationChunk]:
        self._current = cancel = cancel or CancelToken()
        self.calls.append(Call(list(messages), params, continue_last, reuse_cache, constraint,
                               thinking))
        chunks = self._stream(messages, params, cancel)
        if mode == "raw" or constraint is not None:
            return chunks
        continued = messages[-1].content if continue_last else None
        return separate(chunks, inside=opens_inside("", DEFAULT_MARKERS, continued))

    def _stream(self, messages: Sequence[ChatMessage], params: SamplingParams,
                cancel: CancelToken) -> Iterator[GenerationChunk]:
        reply = self.replies.pop(0) if self.replies else "OK."
        pieces = re.findall(r"\s*\S+", reply) or [reply]
        prompt_tokens = sum(len(m.content.split()) for m in messages) + 10
        n = 0
        kept = 0

        def chunk(text: str, reason: str | None = None) -> GenerationChunk:
            accepted = n - 1 in self.accepted_pieces and bool(text)
            return GenerationChunk(
                text=text, new_tokens=n, prompt_tokens=prompt_tokens, ttft_s=0.25,
                prefill_tps=400.0, decode_tps=20.0, seed=params.seed or 1234,
                finish_reason=reason,  # type: ignore[arg-type]
                speculative="lookup" if self.accepted_pieces else None,
                drafted=kept + 1 if self.accepted_pieces else 0, accepted=kept,
                accepted_draft=accepted,
            )

        for piece in pieces:
            if cancel is not None and cancel.cancelled:
                yield chunk("", "cancelled")
                return
            if n >= params.max_new_tokens:
                yield chunk("", "length")
                return
            if self.pause_after is not None and n == self.pause_after:
                self.paused.set()
                while not self.resume.wait(0.01):
                    if cancel is not None and cancel.cancelled:
                        break
                if cancel is not None and cancel.cancelled:
                    yield chunk("", "cancelled")
                    return
            n += 1
            kept += n - 1 in self.accepted_pieces
            time.sleep(0.002)
            yield chunk(piece)
        yield chunk("", "stop")


    def companion(self, spec: ModelSpec | None = None) -> FakeEngine:
        if self.companion_error:
            raise ModelLoadError(self.companion_error)
        replies = self.companion_replies_by_path.get(spec.path, self.companion_replies) \
            if spec is not None else self.companion_replies
        other = FakeEngine(replies=replies, pause_after=self.pause_after, resume=self.resume)
        name = (self.loaded_info.name if self.loaded_info else "fake-model") \
            if spec is None else spec.path.rsplit("/", 1)[-1] + (
                f" {spec.quant}" if spec.quant != "none" else "")
        other.loaded_info = fake_info(name, spec.path if spec else "default")
        if spec is not None and (Path(spec.path) / "adapter_config.json").is_file():
            # As the loader: a LoRA run folder is the base's weights plus this adapter.
            other.loaded_info = replace(other.loaded_info, kind="adapter", adapter=spec.path)
        if spec is None and self.loaded_info is not None:  # the same weights, same runtime
            other.loaded_info = replace(other.loaded_info, runtime=self.loaded_info.runtime)
        self.companions.append(other)
        return other


@dataclass
class FakeHub:
    """MCP tools without servers: ``results`` by tool name (an McpError is raised);
    ``calls`` records what ran."""

    tools: tuple[McpTool, ...] = ()
    results: dict[str, ToolResult | McpError] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    calls: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    closed: bool = False

    @property
    def servers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.server for t in self.tools))

    def list_tools(self, refresh: bool = False) -> Listing:
        return Listing(self.tools, self.problems)

    def call(self, tool: McpTool, arguments: dict[str, object]) -> ToolResult:
        self.calls.append((tool.name, arguments))
        result = self.results.get(tool.name, ToolResult("ok"))
        if isinstance(result, McpError):
            raise result
        return result

    def close(self) -> None:
        self.closed = True


# mypy checks that the fakes keep up with the real engine's and hub's Protocols.
def _as_engine(fake: FakeEngine) -> EngineLike:
    return fake


def _as_hub(fake: FakeHub) -> ToolHubLike:
    return fake
