"""What to load (ModelSpec) and what was loaded (ModelInfo, LoadedModel): a leaf."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

# A long step's progress: (what it is doing, fraction done 0..1).
Progress = Callable[[str, float], None]

Dtype = Literal["auto", "fp32", "bf16", "fp16"]
Quant = Literal["none", "8bit", "4bit", "cpu-int8"]
DTYPES: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
QUANTS: tuple[str, ...] = ("none", "8bit", "4bit", "cpu-int8")
# The names of engine/runtimes' modules (runtimes.NAMES is checked against this list).
Runtime = Literal["auto", "llamacpp", "onnx", "transformers"]
RUNTIMES: tuple[str, ...] = ("auto", "llamacpp", "onnx", "transformers")


@dataclass(frozen=True)
class ModelSpec:
    """What to load and how. ``path`` is "default", a folder, or a .gguf file."""

    path: str = "default"
    dtype: Dtype = "auto"
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    quant: Quant = "none"
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = "nf4"
    bnb_4bit_double_quant: bool = True
    bnb_4bit_compute_dtype: Literal["bf16", "fp16", "fp32"] = "bf16"
    adapter: str | None = None  # LoRA adapter folder applied on top of ``path``
    allow_pickle: bool = False  # permit .bin/.pt weights (loaded with weights_only)
    runner: Literal["auto", "hf"] = "auto"  # auto: lean Llama decode path where it applies
    # Chat runtime (engine/runtimes: one module each). auto: runtimes.choose's table (the
    # README's "Runtimes"). Only chat engines honour it; tools always get transformers.
    runtime: Runtime = "auto"

    def with_(self, **changes: Any) -> ModelSpec:
        return replace(self, **changes)

    def identity(self) -> dict[str, Any]:
        """Which model runs how: the fields that make two specs "the same model" (a
        conversation's model, the app's remembered model, the recent list). JSON-ready;
        ``same_model`` compares two of them."""
        return {k: getattr(self, k) for k in IDENTITY_FIELDS}

    def with_identity(self, values: Mapping[str, Any]) -> ModelSpec:
        """This spec with the identity fields ``values`` has (others are left as they
        are: a stored identity from before a field existed keeps this spec's value)."""
        return replace(self, **{k: values[k] for k in IDENTITY_FIELDS if k in values})


# The fields of ModelSpec.identity(); the rest (bnb options, allow_pickle, runner) say how
# to load, not which model answers.
IDENTITY_FIELDS: tuple[str, ...] = ("path", "dtype", "device", "quant", "adapter", "runtime")


def same_model(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """Whether two stored identities (``ModelSpec.identity()``) name the same model. A
    field an older record lacks counts as ModelSpec's default ("auto" runtime), and no
    adapter is the same whether stored as None or ""."""
    if a is None or b is None:
        return a is b
    return _normal(a) == _normal(b)


def _normal(values: Mapping[str, Any]) -> dict[str, Any]:
    base = ModelSpec()
    out = {k: values.get(k, getattr(base, k)) for k in IDENTITY_FIELDS}
    out["adapter"] = out["adapter"] or None
    return out


@dataclass(frozen=True)
class ModelInfo:
    """Facts about a loaded model, shown in the status bar and stored as provenance."""

    name: str
    path: str
    kind: str  # hf | gguf | adapter | default
    architecture: str
    n_params: int
    footprint_bytes: int
    load_time_s: float
    context_length: int
    has_chat_template: bool
    dtype: str
    device: str
    quant: str
    adapter: str | None
    fingerprint: str
    warnings: tuple[str, ...] = ()
    runtime: str = "transformers"  # the engine/runtimes module that runs the decode loop
    runtime_copy: str = ""  # onnx: fingerprint of the converted copy that is running
    runtime_tag: str = ""  # how the runtime is shown after the name ("" for transformers)
    # The chat template has an ``enable_thinking`` switch (generation/reasoning.py): the
    # app's thinking on/off applies to this model. Set by the engine after a load.
    thinking_switch: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def label(self) -> str:
        quant = "" if self.quant == "none" else f" {self.quant}"
        runtime = f", {self.runtime_tag}" if self.runtime_tag else ""
        return f"{self.name} ({self.dtype}{quant}, {self.device}{runtime})"


@dataclass
class LoadedModel:
    spec: ModelSpec
    model: Any
    tokenizer: Any
    info: ModelInfo
    extra: dict[str, Any] = field(default_factory=dict)


