"""Chat runtimes, one module each, and the one place that chooses between them.

Each module (transformers.py, onnx.py, llamacpp.py, remote.py) answers the same questions
(base.Runtime): can it run this spec and why not, load, its token-level backend, its
threads, how it is shown. Nothing outside this package compares runtime names
(tests/engine/runtimes/test_registry.py checks the source tree for it).

``auto`` (the README's "Runtimes" table, from benchmarks/bench_runtimes.py):

| what is loaded                           | runtime      | why                                   |
|------------------------------------------|--------------|---------------------------------------|
| an ONNX copy folder                      | onnx         | the only one that runs it             |
| a GGUF file or store model, on the CPU   | llamacpp     | memory-mapped in place, no conversion |
| a checkpoint folder or the default model | onnx         | int8 copy built once, fastest decode  |
|   ... on a GPU, bitsandbytes, cpu-int8   | transformers | what supports them                    |
|   ... with a dtype or runner hf asked    | transformers | the exact reference path              |
| anything a runtime above cannot run      | transformers | any architecture; a warning says why  |

A remote model (``remote://NAME/model``, a profile of settings.toml) runs on the remote
runtime whatever the spec asks: it is never a candidate of ``auto`` for a local file,
and it takes conversations, not token ids (``conversation``).
"""

from __future__ import annotations

from pathlib import Path

from slmchat.engine.generation.backends.base import Backend
from slmchat.engine.model.files import resolve_source
from slmchat.engine.model.loader import check_spec, display_name
from slmchat.engine.model.remote import FORMAT as REMOTE_FORMAT
from slmchat.engine.model.remote import is_remote
from slmchat.engine.model.spec import RUNTIMES, LoadedModel, ModelInfo, ModelSpec, Progress
from slmchat.engine.runtimes import llamacpp, onnx, remote, transformers
from slmchat.engine.runtimes.base import Conversation, Runtime, Source
from slmchat.errors import ModelLoadError

# Registered in the order ``auto`` tries them; transformers last, it runs anything.
REGISTRY: dict[str, Runtime] = {
    rt.name: rt for rt in (llamacpp.RUNTIME, onnx.RUNTIME, transformers.RUNTIME)
}
NAMES: tuple[str, ...] = tuple(REGISTRY)
FALLBACK = transformers.RUNTIME
# An ONNX copy folder runs on onnx alone, and auto never converts GGUF to ONNX.
_ONLY = {"onnx": onnx.RUNTIME}
# Runtimes that run what a spec names by itself (not a file auto chooses a runtime for),
# and take whole conversations.
_CONVERSING: dict[str, remote.RemoteRuntime] = {remote.RUNTIME.name: remote.RUNTIME}


def get(name: str) -> Runtime:
    try:
        return REGISTRY[name] if name in REGISTRY else _CONVERSING[name]
    except KeyError:
        raise ModelLoadError(f"unknown runtime {name!r} (choose from auto, {', '.join(NAMES)})") from None


def candidates(spec: ModelSpec, source: Source, notes: list[str] | None = None) -> list[Runtime]:
    """The runtimes that load ``spec`` for chat, in the order they are tried.

    An explicit ``spec.runtime`` is the only candidate (ModelLoadError with its reason
    when it cannot run this spec). ``auto`` keeps, in registry order, each runtime that
    is installed, can run the spec and has no auto_blocker; ``notes`` receives the line a
    passed-over runtime thinks the user should see (not installed, an adapter it cannot
    take)."""
    if spec.runtime != "auto":
        runtime = get(spec.runtime)
        reason = runtime.blocker(spec, source)
        if reason:
            raise ModelLoadError(f"the {runtime.name} runtime cannot run this model: {reason}")
        return [runtime]
    if source.kind in _ONLY:
        only = _ONLY[source.kind]
        reason = only.blocker(spec, source)
        if reason:
            raise ModelLoadError(f"{source.path} is an ONNX copy: {reason}")
        return [only]
    chosen: list[Runtime] = []
    for runtime in REGISTRY.values():
        # auto_blocker first: it is cheap (the file's size and kind), while blocker may
        # import the runtime's library (llama_cpp: ~0.15-0.25 s of every cold start).
        if runtime.auto_blocker(spec, source) or runtime.blocker(spec, source):
            note = runtime.skip_note(spec, source)
            if note and notes is not None:
                notes.append(note)
            continue
        chosen.append(runtime)
    return chosen or [FALLBACK]


def choose(spec: ModelSpec, source: Source) -> Runtime:
    """The runtime ``spec`` would run on (the first candidate; a load may still fall
    back to the next one, e.g. when the ONNX builder fails)."""
    return candidates(spec, source)[0]


def load(spec: ModelSpec, lite: bool = False, progress: Progress | None = None,
         measure: bool = False) -> LoadedModel:
    """Load ``spec`` for chat on the chosen runtime. Any failure is one ModelLoadError line
    and nothing global changes before the model is loaded (the caller keeps its model).

    ``measure``: for perplexity (eval, quantize's before/after): ``auto`` means the exact
    reference, transformers, except for what only one runtime runs (an ONNX copy); an
    explicit runtime is honoured, so `eval --runtime llamacpp` measures what chat runs."""
    check_spec(spec)
    if is_remote(spec.path):  # a profile's model: its server runs it, whatever else is asked
        return remote.RUNTIME.load_remote(spec)
    if spec.runtime not in RUNTIMES:
        raise ModelLoadError(f"unknown runtime {spec.runtime!r} (choose from {', '.join(RUNTIMES)})")
    kind, path = resolve_source(spec)
    source = Source(kind, path)
    warnings: list[str] = []
    name = display_name(kind, path, spec)
    chosen = candidates(spec, source, warnings)
    if measure and spec.runtime == "auto" and source.kind not in _ONLY:
        chosen = [FALLBACK]
    for runtime in chosen:
        loaded = runtime.load(spec, source, name, progress, warnings, lite)
        if loaded is not None:
            return loaded
    return FALLBACK.load(spec, source, name, progress, warnings, lite)


def runtime_of(info: ModelInfo) -> Runtime:
    return get(info.runtime)


def conversation(info: ModelInfo) -> Conversation | None:
    """The runtime of ``info`` when it takes whole conversations (a remote server applies
    its own template), else None: the engine builds the prompt and decodes tokens."""
    return _CONVERSING.get(info.runtime)


def is_remote_spec(spec: ModelSpec) -> bool:
    """Whether ``spec`` names a remote profile's model (no local memory needed)."""
    return is_remote(spec.path)


def backend_for(lm: LoadedModel) -> Backend:
    """The token-level backend of a loaded model, from the runtime that loaded it."""
    return runtime_of(lm.info).backend(lm)


# discovery's formats as the source kind they resolve to; the quantized folders need
# transformers whatever the spec says.
_KIND_OF_FORMAT = {"onnx-int8": "onnx", "gguf": "gguf", "lora": "adapter", "safetensors": "hf"}
_TRANSFORMERS_FORMATS = frozenset({"bnb-8bit", "bnb-4bit", "cpu-int8", "pickle"})


def hint(fmt: str, convertible: bool, spec: ModelSpec | None = None) -> str:
    """The runtime a chat load would pick, from discovery's facts alone (no weights read):
    for the model switcher. ``convertible``: the ONNX builder takes the architecture."""
    spec = spec or ModelSpec()
    if fmt == REMOTE_FORMAT:
        return remote.RUNTIME.name
    if fmt in _TRANSFORMERS_FORMATS:
        return FALLBACK.name
    kind = _KIND_OF_FORMAT.get(fmt, "hf")
    try:
        first = candidates(spec, Source(kind, Path(fmt)))[0]
    except ModelLoadError:
        return spec.runtime if spec.runtime != "auto" else FALLBACK.name
    if first is onnx.RUNTIME and kind != "onnx" and spec.runtime == "auto":
        return f"{first.name} (auto)" if convertible else FALLBACK.name
    return first.name


def availability() -> dict[str, str | None]:
    """Each runtime's name and why it is unavailable here (None: usable): for doctor."""
    return {name: rt.unavailable() for name, rt in REGISTRY.items()}


__all__ = ["NAMES", "REGISTRY", "Conversation", "Runtime", "Source", "availability",
           "backend_for", "candidates", "choose", "conversation", "get", "hint",
           "is_remote_spec", "load", "runtime_of"]
