"""Fine-tune outputs are named after their run and base, not their folder ("model")."""

from __future__ import annotations

import json
from pathlib import Path

from slmchat.engine.model.naming import finetuned_name


def test_output_inside_a_run_folder_takes_the_run_name(tmp_path: Path) -> None:
    out = tmp_path / "20261128-140501-notes" / "model"
    out.mkdir(parents=True)
    (out / "slmchat-train.json").write_text(json.dumps(
        {"base_model": "/cache/models/SmolLM2-135M-Instruct", "method": "lora"}))
    assert finetuned_name(out) == "20261128-140501-notes [lora on SmolLM2-135M-Instruct]"


def test_output_folder_with_its_own_name_and_plain_folders(tmp_path: Path) -> None:
    out = tmp_path / "notes-full"
    out.mkdir()
    (out / "slmchat-train.json").write_text(json.dumps({"base_model": "/m/base",
                                                        "method": "full"}))
    assert finetuned_name(out) == "notes-full [full on base]"
    (tmp_path / "plain").mkdir()
    assert finetuned_name(tmp_path / "plain") is None
    (tmp_path / "plain" / "slmchat-train.json").write_text("[1, 2")
    assert finetuned_name(tmp_path / "plain") is None


def test_loader_names_a_finetune_output_after_its_run(tmp_path: Path) -> None:
    from slmchat.engine.model.loader import display_name
    from slmchat.engine.model.spec import ModelSpec

    out = tmp_path / "20261128-140501-notes" / "model"
    out.mkdir(parents=True)
    (out / "slmchat-train.json").write_text(json.dumps(
        {"base_model": "/cache/models/SmolLM2-135M-Instruct", "method": "lora"}))
    assert display_name("adapter", out, ModelSpec(path=str(out))) == \
        "20261128-140501-notes [lora on SmolLM2-135M-Instruct]"
    assert display_name("hf", tmp_path, ModelSpec(path=str(tmp_path))) == tmp_path.name
