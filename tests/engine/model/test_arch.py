"""One rule for "plain Llama", shared by the lean runner, GGUF export and discovery."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmchat.engine.model.arch import plain_llama_problem, rope_theta
from slmchat.engine.model.discovery import inspect_folder
from slmchat.engine.model.gguf_layout import check_exportable
from slmchat.engine.model.llama import supports_config
from slmchat.errors import InvalidParameterError

LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_act": "silu"}


@pytest.mark.parametrize("change,reason", [
    ({}, None),
    ({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}, "not a plain Llama"),
    ({"attention_bias": True}, "biases"),
    ({"rope_scaling": {"rope_type": "yarn"}}, "rope scaling"),
    ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5}}, "rope scaling"),
    ({"hidden_act": "gelu"}, "activation"),
])
def test_runner_export_and_discovery_agree(change: dict, reason: str | None, tmp_path: Path) -> None:
    cfg = {**LLAMA, **change}
    problem = plain_llama_problem(cfg)
    assert (problem is None) if reason is None else (reason in (problem or ""))
    assert supports_config(type("C", (), cfg)()) is (reason is None)
    if reason is None:
        check_exportable(cfg)
    else:
        with pytest.raises(InvalidParameterError, match="plain Llama"):
            check_exportable(cfg)
    (tmp_path / "config.json").write_text(__import__("json").dumps(cfg))
    entry = inspect_folder(tmp_path, "models")
    assert entry is not None and entry.plain_llama is (reason is None)


def test_rope_theta_reads_one_order() -> None:
    assert rope_theta({"rope_theta": 5e5}) == 5e5
    assert rope_theta({"rope_parameters": {"rope_theta": 1e6}}) == 1e6
    assert rope_theta({"rope_theta": 5e5, "rope_parameters": {"rope_theta": 1e6}}) == 1e6
    assert rope_theta({}) == 10000.0
