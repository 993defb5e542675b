"""What a runtime module answers: the interface each runtime (transformers, onnx,
llamacpp) implements, and the resolved source a choice is made on. A leaf of runtimes/."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from slmchat.engine.devices import BusyCores
from slmchat.engine.generation.backends.base import Backend
from slmchat.engine.generation.constraints import Constraint
from slmchat.engine.generation.decode import CancelToken, GenerationChunk
from slmchat.engine.generation.prompting import ChatMessage, Prompt, PromptMode
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model.spec import LoadedModel, ModelSpec, Progress


@dataclass(frozen=True)
class Source:
    """What ``ModelSpec.path`` is on disk, decided once (files.resolve_source)."""

    kind: str  # default | hf | gguf | adapter | onnx
    path: Path


def reference_asked(spec: ModelSpec) -> str | None:
    """Why ``spec`` asks for the exact transformers path (``auto`` then passes the fast CPU
    runtimes over), or None."""
    if spec.runner == "hf":
        return "runner hf asks for the transformers forward"
    if spec.dtype != "auto":
        return f"dtype {spec.dtype} asks for transformers"
    return None


class Runtime(Protocol):
    """One way to run a model's forward step for chat (Harlequin's adapters, mlx-lm's
    ModelProvider): can it run this spec and why not, load, the token-level backend,
    its threads, and how it is shown."""

    name: str  # what ModelSpec.runtime and ModelInfo.runtime hold
    tag: str  # shown after a model's name in the status bar ("" for none)
    interleaves: bool  # two replies on it share the cores best taken token by token
    scores_sequences: bool  # a forward returns logits for every position (perplexity)
    uses_torch: bool  # torch runs it (torch's thread settings apply; imports take seconds)
    shares_weights: bool  # two engines may hold states of one loaded model at once

    def unavailable(self) -> str | None:
        """Why this runtime cannot be used on this machine at all (None when it can)."""

    def blocker(self, spec: ModelSpec, source: Source) -> str | None:
        """Why it cannot run ``spec`` (asked for explicitly, this is the error)."""

    def auto_blocker(self, spec: ModelSpec, source: Source) -> str | None:
        """Why ``auto`` does not pick it for ``spec`` even though it could run it."""

    def skip_note(self, spec: ModelSpec, source: Source) -> str | None:
        """The warning line to show when ``auto`` passes this runtime over for ``spec``
        (None: the choice needs no word)."""

    def load(self, spec: ModelSpec, source: Source, name: str, progress: Progress | None,
             warnings: list[str], lite: bool) -> LoadedModel | None:
        """Load for chat; None gives way to the next runtime (a warning says why)."""

    def backend(self, lm: LoadedModel) -> Backend: ...

    def speculates(self, lm: LoadedModel) -> bool:
        """Whether ``--speculative auto`` drafts by prompt lookup for ``lm`` here: drafts
        verify exactly (a reply is the plain one) and cost little."""

    def fit_threads(self, lm: LoadedModel, busy: BusyCores, training: bool) -> None:
        """Size the compute threads to the free cores before a reply."""

    def after_empty_reply(self, lm: LoadedModel) -> str | None:
        """Called when a reply ended with no text (no new tokens, or tokens that decode
        to nothing) or with an error: a one-line warning when that points at the
        model's files (a damaged converted copy, then marked so that the next load
        rebuilds it), else None."""


class Conversation(Protocol):
    """A runtime that takes whole conversations rather than token ids (a remote server
    applies its own chat template): the engine hands it the messages."""

    def preview(self, lm: LoadedModel, messages: Sequence[ChatMessage], params: SamplingParams,
                mode: PromptMode = "chat", continue_last: bool = False,
                detail: bool = False) -> Prompt:
        """What will be sent (for the prompt inspector and the server's budget)."""

    def stream(self, lm: LoadedModel, messages: Sequence[ChatMessage], params: SamplingParams,
               cancel: CancelToken, mode: PromptMode = "chat", continue_last: bool = False,
               constraint: Constraint | None = None) -> Iterator[GenerationChunk]:
        """The reply, chunk by chunk; errors end it with finish_reason "error"."""
