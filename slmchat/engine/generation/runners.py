"""Runners: one forward step over a KV cache, for transformers models or the lean Llama."""

from __future__ import annotations

from typing import Any

from slmchat.errors import InvalidParameterError


class HFRunner:
    """Plain transformers forward over a DynamicCache (any architecture, PEFT, bnb)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def new_cache(self) -> Any:
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    def forward(self, ids: Any, cache: Any) -> tuple[Any, Any]:
        # logits_to_keep=1: a 1,000-token prefill needs one row of logits, not 1,000.
        out = self.model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :], _out_cache(out, cache)

    def forward_all(self, ids: Any, cache: Any) -> tuple[Any, Any]:
        """Logits for every position of ``ids`` [T, V] (speculative verification)."""
        out = self.model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=0)
        return out.logits[0], _out_cache(out, cache)


class FastRunner:
    """slmchat.engine.model.llama.FastLlama with the runner interface."""

    def __init__(self, fast: Any) -> None:
        self.fast = fast

    def new_cache(self) -> Any:
        return self.fast.new_cache()

    def forward(self, ids: Any, cache: Any) -> tuple[Any, Any]:
        return self.fast.forward(ids, cache), cache

    def forward_all(self, ids: Any, cache: Any) -> tuple[Any, Any]:
        return self.fast.forward(ids, cache, every=True), cache


def get_runner(model: Any, kind: str = "auto") -> Any:
    """The decode runner for ``model``, built once and kept on the model object.

    auto: the lean Llama path where it applies (model.llama.supports), else transformers.
    """
    from slmchat.engine.model import llama as llama

    lean = getattr(model, "slmchat_fast", None)  # lite models are a FastLlama already
    if lean is not None:
        if kind == "hf":
            raise InvalidParameterError("this model was loaded without transformers; "
                                        "load it with runner='hf' to use the transformers runner")
        own = model.__dict__.get("_slmchat_runner_fast")
        if own is None:
            own = model.__dict__["_slmchat_runner_fast"] = FastRunner(lean)
        return own
    if kind not in ("auto", "hf", "fast"):
        raise InvalidParameterError(f"unknown runner {kind!r} (auto, hf or fast)")
    use_fast = kind == "fast" or (kind == "auto" and llama.supports(model))
    if kind == "fast" and not llama.supports(model):
        raise InvalidParameterError("the fast runner supports plain Llama-architecture models only")
    attr = "_slmchat_runner_fast" if use_fast else "_slmchat_runner_hf"
    runner = getattr(model, attr, None)
    if runner is None:
        runner = FastRunner(llama.FastLlama.from_model(model)) if use_fast else HFRunner(model)
        model.__dict__[attr] = runner  # cached beside the weights it uses
    return runner


def _out_cache(out: Any, cache: Any) -> Any:
    for name in ("cache", "past_key_values"):
        value = getattr(out, name, None)
        if value is not None:
            return value
    return cache


