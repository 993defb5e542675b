"""onnx_requant: int8 blocks with zero points that hold a quantized source's grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slmchat.engine.model import onnx_requant as rq


def _rebuilt(u: np.ndarray, s: np.ndarray, z: np.ndarray) -> np.ndarray:
    return s.astype(np.float64)[..., None] * (u.astype(np.float64) - z.astype(np.float64)[..., None])


def _q4_1(rng: np.random.Generator, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights as a Q4_1 file holds them, dequantized to float32 (d * q + m, fp16 d and m,
    each block using codes 0 and 15), and each block's d."""
    nb = cols // 32
    d = rng.uniform(0.002, 0.05, (rows, nb)).astype(np.float16).astype(np.float32)
    m = (-d * rng.uniform(0, 15, (rows, nb))).astype(np.float16).astype(np.float32)
    q = rng.integers(0, 16, (rows, nb, 32))
    q[..., 0], q[..., 1] = 0, 15
    return (d[..., None] * q + m[..., None]).astype(np.float32).reshape(rows, cols), d


def test_q4_1_blocks_are_held_within_a_small_part_of_their_step() -> None:
    rng = np.random.default_rng(0)
    w, d = _q4_1(rng, 300, 256)
    u, s, z, err = rq.requantize(w)
    x = w.astype(np.float64).reshape(300, -1, 32)
    got = np.abs(_rebuilt(u, s, z) - x).max(axis=2)
    np.testing.assert_allclose(got, err, rtol=0, atol=1e-12)
    rel = err / d
    # The builder's symmetric form misses by up to 1/34 of a step at best; a grid with
    # the best of 17 spacings lands much closer on most blocks.
    assert rel.max() <= 1 / 34 + 1e-6
    assert np.median(rel) < 0.01, np.median(rel)
    sym = np.abs(x).max(axis=2) / 127
    sym_err = np.abs(sym[..., None] * np.clip(np.rint(x / sym[..., None]), -128, 127) - x).max(axis=2)
    assert np.median(sym_err / d) > 5 * np.median(rel)


def test_q8_0_blocks_are_exact() -> None:
    rng = np.random.default_rng(1)
    d = rng.uniform(0.001, 0.02, (64, 4)).astype(np.float16).astype(np.float32)
    q = rng.integers(-127, 128, (64, 4, 32))
    q[..., 0] = 127
    w = (d[..., None] * q).astype(np.float32).reshape(64, 128)
    _u, _s, z, err = rq.requantize(w)
    assert err.max() <= 1e-7 * d.max()
    assert (z == 128).all()


def test_no_block_is_worse_than_the_builders_symmetric_form() -> None:
    rng = np.random.default_rng(2)
    w = (rng.standard_normal((128, 192)) * 0.05).astype(np.float32)
    w[0, :32] = 0.0  # a constant block
    w[1, 32:64] = 0.25  # a constant, non-zero block
    u, s, z, err = rq.requantize(w)
    x = w.astype(np.float64).reshape(128, -1, 32)
    amax = np.abs(x).max(axis=2)
    sym = np.where(amax > 0, amax / 127, 1.0)
    sym_err = np.abs(sym[..., None] * np.clip(np.rint(x / sym[..., None]), -128, 127) - x).max(axis=2)
    assert (err <= sym_err + 1e-7 * amax).all()  # the float32 scale's rounding
    assert err[0, 0] == 0 and err[1, 1] < 1e-9
    assert u.dtype == np.uint8 and z.dtype == np.uint8 and s.dtype == np.float32
    with pytest.raises(ValueError, match="multiple of 32"):
        rq.requantize(np.zeros((2, 40), dtype=np.float32))


def test_a_built_copy_has_zero_points_that_rebuild_its_source(tiny_llama_dir: Path) -> None:
    """The int8 copy of a checkpoint goes through onnx_requant: every 8-bit MatMulNBits
    takes a zero point, and its blocks rebuild the source weights at least as closely as
    asymmetric round-to-nearest promises (half of range / 255)."""
    import onnx
    from onnx import numpy_helper
    from safetensors.numpy import load_file

    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.runtimes import load as chat_load

    lm = chat_load(ModelSpec(path=str(tiny_llama_dir)))
    folder = Path(lm.model.folder)
    model = onnx.load(str(folder / "model.onnx"))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    assert nodes and all(len(n.input) == 4 for n in nodes)
    source = load_file(str(next(tiny_llama_dir.glob("*.safetensors"))))
    node = next(n for n in nodes if "mlp.down_proj" in n.input[1])
    layer = node.input[1].split(".")[2]
    want = source[f"model.layers.{layer}.mlp.down_proj.weight"].astype(np.float64)
    u, s, z = inits[node.input[1]], inits[node.input[2]], inits[node.input[3]]
    n_rows = want.shape[0]
    got = _rebuilt(u.reshape(n_rows, -1, 32), s.reshape(n_rows, -1), z.reshape(n_rows, -1))
    x = want.reshape(n_rows, -1, 32)
    bound = (x.max(axis=2) - x.min(axis=2)) / 255 / 2 * 1.001 + 1e-9
    assert (np.abs(got - x).max(axis=2) <= bound).all()


def _builder_copy(folder: Path, w: np.ndarray) -> None:
    """A one-matrix copy in the builder's form: symmetric blocks (scale max|w| / 128,
    codes clipped to -128..127, stored +128), weights in model.onnx.data."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n, k = w.shape
    x = w.astype(np.float64).reshape(n, -1, 32)
    scale = np.abs(x).max(axis=2) / 128
    u = (np.clip(np.rint(x / scale[..., None]), -128, 127) + 128).astype(np.uint8)
    name = "model.layers.0.mlp.down_proj.MatMul"
    node = helper.make_node("MatMulNBits", ["A", name + ".weight_Q8", name + ".weight_scales"],
                            ["Y"], domain="com.microsoft", K=k, N=n, bits=8, block_size=32,
                            accuracy_level=4)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", n])],
        [numpy_helper.from_array(u, name + ".weight_Q8"),
         numpy_helper.from_array(scale.astype(np.float32), name + ".weight_scales")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    folder.mkdir()
    onnx.save(model, str(folder / "model.onnx"), save_as_external_data=True,
              location="model.onnx.data", size_threshold=0)


def _run(folder: Path, a: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(str(folder / "model.onnx")).run(None, {"A": a})[0]


def test_apply_rewrites_a_builder_copy_from_its_source(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(3)
    w, _ = _q4_1(rng, 96, 128)
    source = tmp_path / "source"
    source.mkdir()
    save_file({"model.layers.0.mlp.down_proj.weight": w}, str(source / "model.safetensors"))
    _builder_copy(tmp_path / "copy", w)
    a = rng.standard_normal((3, 128)).astype(np.float32)
    was = np.abs(_run(tmp_path / "copy", a) - a @ w.T).max()
    stats = rq.apply(tmp_path / "copy", source)
    assert stats["matrices"] == 1 and not stats["skipped"]
    assert stats["mean_block_error_after"] < stats["mean_block_error_before"] / 5
    now = np.abs(_run(tmp_path / "copy", a) - a @ w.T).max()  # zero points read by ORT
    assert now < was  # what is left is the activations' int8 rounding


def test_a_matrix_matched_to_the_wrong_source_is_left_as_built(tmp_path: Path) -> None:
    """If the source rows behind a builder matrix are not the ones it was built from (an
    architecture whose packed q/k/v order differs, say), the builder's blocks stay."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(4)
    w = (rng.standard_normal((64, 64)) * 0.05).astype(np.float32)
    _builder_copy(tmp_path / "copy", w)
    source = tmp_path / "source"
    source.mkdir()
    other = w[::-1].copy()  # the same values, other rows
    save_file({"model.layers.0.mlp.down_proj.weight": other}, str(source / "model.safetensors"))
    before = (tmp_path / "copy" / "model.onnx.data").read_bytes()
    stats = rq.apply(tmp_path / "copy", source)
    assert stats["matrices"] == 0 and stats["skipped"] == ["model.layers.0.mlp.down_proj.MatMul.weight_Q8"]
    assert (tmp_path / "copy" / "model.onnx.data").read_bytes() == before
