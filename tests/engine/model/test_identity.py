"""ModelSpec.identity(): the one answer to "is this the same model", wherever it is asked
(a conversation's model, the app's remembered model, the settings' [model]; the app's
side: tests/tui/test_last_model.py)."""

from __future__ import annotations

from slmchat.engine.model.spec import IDENTITY_FIELDS, ModelSpec, same_model


def test_identity_names_path_dtype_device_quant_adapter_and_runtime() -> None:
    spec = ModelSpec(path="/m", dtype="fp32", device="cpu", quant="8bit", adapter="/a",
                     runtime="onnx", allow_pickle=True)
    assert spec.identity() == {"path": "/m", "dtype": "fp32", "device": "cpu",
                               "quant": "8bit", "adapter": "/a", "runtime": "onnx"}
    assert tuple(spec.identity()) == IDENTITY_FIELDS
    # How to load (pickle, runner, bnb options) is not which model answers.
    assert same_model(spec.identity(), spec.with_(allow_pickle=False, runner="hf").identity())
    for field, other in (("runtime", "llamacpp"), ("device", "cuda"), ("dtype", "bf16"),
                         ("quant", "none"), ("adapter", None), ("path", "/n")):
        assert not same_model(spec.identity(), spec.with_(**{field: other}).identity()), field


def test_older_records_read_with_the_defaults() -> None:
    new = ModelSpec(path="/m").identity()
    old = {"path": "/m", "dtype": "auto", "device": "auto", "quant": "none", "adapter": ""}
    assert same_model(old, new)  # no runtime: "auto"; "" and None are no adapter alike
    assert not same_model(old, ModelSpec(path="/m", runtime="onnx").identity())
    assert same_model(None, None) and not same_model(None, new)
    assert ModelSpec(runtime="onnx").with_identity({"path": "/x", "other": 1}) == ModelSpec(
        path="/x", runtime="onnx")
