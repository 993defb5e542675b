"""The app's remembered model and a conversation's model use ModelSpec.identity(): the
runtime and the device are part of "the same model"; notes from before read as before."""

from __future__ import annotations

import json

from slmchat.config import Settings
from slmchat.engine.model.spec import ModelSpec
from slmchat.paths import data_dir
from slmchat.tui.last_model import STATE_FILE, remember, remembered
from slmchat.tui.ui_state import spec_dict, spec_from


def test_a_conversation_model_round_trips_with_its_device_and_runtime() -> None:
    spec = ModelSpec(path="/m", device="cpu", runtime="onnx")
    assert spec_from(spec_dict(spec)) == spec
    assert spec_from({"path": "/m"}) == ModelSpec(path="/m")


def test_the_remembered_model_keeps_its_runtime_and_reads_old_notes() -> None:
    settings = Settings()
    remember(ModelSpec(path="/models/x", runtime="onnx"), settings)
    spec = remembered(settings, ModelSpec())
    assert spec is not None and (spec.path, spec.runtime) == ("/models/x", "onnx")
    # The configured model with another runtime is another model: the note stays.
    remember(ModelSpec(runtime="onnx"), settings)
    assert (data_dir() / STATE_FILE).exists()
    remember(ModelSpec(), settings)  # the configured model itself: the note goes
    assert not (data_dir() / STATE_FILE).exists()
    # A note written before runtimes were remembered: no runtime in either part.
    (data_dir() / STATE_FILE).write_text(json.dumps({
        "model": {"path": "/old", "dtype": "fp32", "device": "cpu", "quant": "none",
                  "adapter": None},
        "over": {"path": "default", "dtype": "auto", "device": "auto", "quant": "none",
                 "adapter": None}}))
    spec = remembered(settings, ModelSpec(runtime="transformers"))
    assert spec is not None and (spec.path, spec.dtype, spec.runtime) == (
        "/old", "fp32", "transformers")
    settings.model.runtime = "onnx"  # [model] changed since the note: the file wins
    assert remembered(settings, ModelSpec()) is None
