"""Lite start-up path: run a Llama safetensors checkpoint without importing transformers.

Why: on a 2-core CPU, importing transformers' modeling stack costs seconds (it pulls in
torch.distributed and torch._dynamo), several times the model's own load time, and
``slmchat generate`` should reach its first token in under 3 s. For plain Llama
checkpoints (the default model among them) this module loads the weights with
safetensors straight into the lean runner (model.llama.FastLlama), tokenizes with the
``tokenizers`` library, and renders chat templates in a sandboxed Jinja environment set
up like transformers' own. Anything else (adapters, quantization, other architectures)
falls back to the full loader. Tests compare token ids, templates and text with
transformers.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from slmchat.engine.model.files import check_safetensors, fingerprint, has_python_files, read_json

_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _compile_template(source: str) -> Any:
    """A sandboxed Jinja template, configured as transformers configures its own."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    class TemplateNamespace(jinja2.utils.Namespace):
        # Namespaces reject dunder/underscore attributes: no path to Python internals.
        def __init__(*args: Any, **kwargs: Any) -> None:
            self, rest = args[0], args[1:]
            attrs = dict(*rest, **kwargs)
            for name in attrs:
                TemplateNamespace._check(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name: str, value: Any) -> None:
            TemplateNamespace._check(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check(name: Any) -> None:
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(
                    f"chat templates cannot set underscore attributes ({name!r})")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.globals["dict"] = lambda *a, **k: dict(*a, **k)
    env.globals["namespace"] = TemplateNamespace
    return env.from_string(source)


class LiteTokenizer:
    """The subset of a transformers tokenizer that prompting and generation use."""

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        cfg_path = folder / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
        jinja = folder / "chat_template.jinja"
        self.chat_template: str | None = jinja.read_text() if jinja.is_file() else cfg.get("chat_template")
        if not isinstance(self.chat_template, str):
            self.chat_template = None
        self.bos_token = _token_text(cfg.get("bos_token"))
        self.eos_token = _token_text(cfg.get("eos_token"))
        self.unk_token = _token_text(cfg.get("unk_token"))
        self.pad_token = _token_text(cfg.get("pad_token")) or self.eos_token
        self.eos_token_id = self._id(self.eos_token)
        self.bos_token_id = self._id(self.bos_token)
        self.pad_token_id = self._id(self.pad_token)
        self.clean_up_spaces = bool(cfg.get("clean_up_tokenization_spaces", False))
        self._template: Any = None

    def _id(self, token: str | None) -> int | None:
        return self._tok.token_to_id(token) if token else None

    def __len__(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    @property
    def all_special_tokens(self) -> list[str]:
        """The special tokens (added tokens marked special, and bos/eos/unk/pad), as
        transformers lists them: the prompt inspector marks these in the prompt."""
        found = {str(t.content) for t in self._tok.get_added_tokens_decoder().values()
                 if t.special}
        found.update(t for t in (self.bos_token, self.eos_token, self.unk_token,
                                 self.pad_token) if t)
        return sorted(found)

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": list(self._tok.encode(text, add_special_tokens=add_special_tokens).ids)}

    def decode(self, ids: Any, skip_special_tokens: bool = False) -> str:
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        text = str(self._tok.decode(ids, skip_special_tokens=skip_special_tokens))
        if self.clean_up_spaces:  # transformers' clean_up_tokenization
            for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                         (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"),
                         (" 're", "'re")):
                text = text.replace(a, b)
        return text

    def apply_chat_template(self, messages: list[dict[str, str]], tokenize: bool = False,
                            add_generation_prompt: bool = False,
                            continue_final_message: bool = False, **variables: Any) -> Any:
        if not self.chat_template:
            raise ValueError("this tokenizer has no chat template")
        if self._template is None:
            self._template = _compile_template(self.chat_template)
        special = {k: v for k, v in (("bos_token", self.bos_token), ("eos_token", self.eos_token),
                                     ("unk_token", self.unk_token), ("pad_token", self.pad_token))
                   if v is not None}
        text = render_chat(self._template, messages, add_generation_prompt,
                           continue_final_message, {**variables, **special})
        return self(text, add_special_tokens=False)["input_ids"] if tokenize else text


def render_chat(template: Any, messages: list[dict[str, str]], add_generation_prompt: bool,
                continue_final_message: bool, special: dict[str, Any]) -> str:
    """Render a compiled chat template as transformers' apply_chat_template does,
    including ``continue_final_message`` (the reply is left open after its last text).
    ``special``: the special tokens' names, and extra template variables as transformers
    passes its ``**kwargs`` (``enable_thinking``)."""
    chat = [dict(m) for m in messages]
    final = chat[-1]["content"] if continue_final_message and chat else ""
    if continue_final_message:
        chat[-1]["content"] = final + _CONTINUE_TAG
    text = str(template.render(messages=chat, add_generation_prompt=add_generation_prompt,
                               **special))
    if continue_final_message:
        # Cut everything the template put after the final message (its end-of-turn).
        tag = text.rfind(final + _CONTINUE_TAG.rstrip())
        if tag < 0:
            raise ValueError("the chat template dropped the final message to continue")
        text = text[: tag + len(final)]
    return text


class LiteModel:
    """Holds the lean Llama plus the attributes generation reads from a model.

    ``slmchat_fast`` tells generation.runners to drive the lean model directly."""

    def __init__(self, config: Any, generation_config: Any, fast: Any) -> None:
        self.config = config
        self.generation_config = generation_config
        self.slmchat_fast = fast

    def parameters(self) -> Any:
        return self.slmchat_fast.parameters()

    def eval(self) -> LiteModel:
        return self


def _config(folder: Path) -> SimpleNamespace:
    raw = read_json(folder / "config.json", strict=True)
    defaults = {"rms_norm_eps": 1e-6, "max_position_embeddings": 2048, "hidden_act": "silu",
                "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False}
    return SimpleNamespace(**{**defaults, **raw})


def eligible(kind: str, folder: Path, spec: Any) -> bool:
    """Whether the lite path can load this exactly as the full loader would."""
    from slmchat.engine.model.llama import supports_config

    if spec.runner != "auto" or spec.quant != "none" or spec.adapter or kind not in ("default", "hf"):
        return False
    if not (folder / "tokenizer.json").is_file() or not list(folder.glob("*.safetensors")):
        return False
    try:
        cfg = _config(folder)
    except (OSError, json.JSONDecodeError, TypeError):
        return False
    if getattr(cfg, "quantization_config", None) or getattr(cfg, "architectures", None) != [
            "LlamaForCausalLM"]:
        return False
    return supports_config(cfg)


def load_lite(kind: str, folder: Path, spec: Any, name: str) -> Any:
    """Load ``folder`` into a LoadedModel backed by the lean runner (no transformers)."""
    import torch
    from safetensors.torch import load_file

    from slmchat.engine.devices import resolve_device, resolve_dtype
    from slmchat.engine.model.llama import FastLlama
    from slmchat.engine.model.spec import LoadedModel, ModelInfo

    start = time.perf_counter()
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    files = sorted(folder.glob("*.safetensors"))
    check_safetensors(files)
    tensors: dict[str, torch.Tensor] = {}
    for path in files:
        tensors.update(load_file(str(path), device=device))
    n_params = sum(t.numel() for t in tensors.values())
    tensors = {k: v.to(dtype) for k, v in tensors.items()}
    cfg = _config(folder)
    gen_path = folder / "generation_config.json"
    gen = SimpleNamespace(**json.loads(gen_path.read_text())) if gen_path.is_file() else cfg
    footprint = sum(t.numel() * t.element_size() for t in tensors.values())
    fast = FastLlama.from_state_dict(cfg, tensors)  # consumes the per-layer matrices
    del tensors
    tokenizer = LiteTokenizer(folder)
    warnings = ("folder contains Python files; they are ignored (trust_remote_code off)",) \
        if has_python_files(folder) else ()
    info = ModelInfo(
        name=name, path=str(folder), kind=kind, architecture="LlamaForCausalLM",
        n_params=n_params, footprint_bytes=footprint, load_time_s=time.perf_counter() - start,
        context_length=int(cfg.max_position_embeddings),
        has_chat_template=bool(tokenizer.chat_template),
        dtype={torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype],
        device=device, quant="none", adapter=None, fingerprint=fingerprint(files),
        warnings=warnings,
    )
    return LoadedModel(spec=spec, model=LiteModel(cfg, gen, fast), tokenizer=tokenizer,
                       info=info, extra={"lite": True})
