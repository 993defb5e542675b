"""Int8 blocks that hold a quantized model's weights as closely as int8 can, for the
ONNX copies.

ONNX Runtime GenAI's builder quantizes each block of 32 weights symmetrically
(``scale = max|w| / 128``, codes -128..127, zero point 128). For weights that are
already quantized, such as the default model's Q4_1 file (each block ``d * q + m``, q in 0..15), that adds
an error of up to half an int8 step (a whole one where the clipped code +127 falls), 1/34
of a Q4_1 step or more, on top of the file's own.

``MatMulNBits`` also takes a uint8 zero point per block. With ``scale = d / k`` and an
integer zero point, ``scale * (u - z)`` lands on the Q4_1 grid up to ``d / k`` times the
distance of ``k * m / d`` from an integer; trying every k from 1 to 17 (15 * 17 = 255)
finds one that is close for most blocks. A Q8_0 block (``d * q``, |q| <= 127) is held
exactly by the symmetric form. Each block keeps whichever candidate reconstructs it best
(symmetric, plain asymmetric round-to-nearest, or a grid), so no block gets worse than
what the builder wrote. Zero points cost no speed in ONNX Runtime's int8 kernel
(one 1536x1536 product: 40 against 76 us at M=1, 3.30 against 3.34 ms at M=128; the
default model end to end: 1k-token prefill the same, forwards 3-6 % faster).

``apply(copy, source)`` rewrites a built copy's 8-bit ``MatMulNBits`` weights in place,
from the checkpoint folder the copy was built from (the weights the builder read).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

BLOCK = 32
GRID_STEPS = 15  # a 4-bit grid (Q4_0, Q4_1, Q4_K's sub-blocks): 16 levels
MAX_K = 255 // GRID_STEPS
ROWS_AT_ONCE = 2048  # bounds the float64 scratch (~100 MB for a 576-wide matrix)


def requantize(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``w`` [N, K] float -> (u uint8 [N, K/32, 32], scales float32 [N, K/32], zero points
    uint8 [N, K/32], the largest error of each block float64 [N, K/32])."""
    n, k = w.shape
    if k % BLOCK:
        raise ValueError(f"K={k} is not a multiple of {BLOCK}")
    outs = [_blocks(_as_blocks(w[at:at + ROWS_AT_ONCE])) for at in range(0, n, ROWS_AT_ONCE)]
    return tuple(np.concatenate([o[i] for o in outs]) for i in range(4))  # type: ignore[return-value]


def _as_blocks(w: np.ndarray) -> np.ndarray:
    return w.astype(np.float64).reshape(w.shape[0], -1, BLOCK)


def _blocks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The best candidate per block of ``x`` [rows, blocks, 32] float64."""
    lo, hi = x.min(axis=2), x.max(axis=2)
    amax = np.maximum(np.abs(lo), np.abs(hi))
    flat = hi == lo
    best_err = np.full(lo.shape, np.inf)
    best_u = np.zeros(x.shape, dtype=np.uint8)
    best_s = np.zeros(lo.shape, dtype=np.float32)
    best_z = np.zeros(lo.shape, dtype=np.uint8)

    def consider(scale: np.ndarray, u: np.ndarray, z: np.ndarray, ok: np.ndarray) -> None:
        s32 = scale.astype(np.float32)
        err = np.abs(s32.astype(np.float64)[..., None] * (u - z[..., None]) - x).max(axis=2)
        err = np.where(ok & np.isfinite(err), err, np.inf)
        take = err < best_err
        best_err[take] = err[take]
        best_s[take] = s32[take]
        best_z[take] = z[take].astype(np.uint8)
        best_u[take] = u[take].astype(np.uint8)

    everywhere = np.ones(lo.shape, dtype=bool)
    # Symmetric (the builder's form; exact for Q8_0 blocks).
    s = np.where(amax > 0, amax / 127.0, 1.0)
    consider(s, np.clip(np.rint(x / s[..., None]) + 128, 0, 255), np.full(lo.shape, 128.0),
             everywhere)
    # Asymmetric round-to-nearest over the block's own range.
    s = np.where(flat, np.where(amax > 0, amax, 1.0), (hi - lo) / 255.0)
    z = np.clip(np.rint(-lo / s), 0, 255)
    consider(s, np.clip(np.rint(x / s[..., None]) + z[..., None], 0, 255), z, everywhere)
    # Blocks on a 4-bit grid (min + d * q): held at k codes per step, k chosen per block
    # where k * min / d is nearest an integer (the error is d / k times that distance).
    d = np.where(flat, 1.0, (hi - lo) / GRID_STEPS)
    q = (x - lo[..., None]) / d[..., None]
    grid = ~flat & (np.abs(q - np.rint(q)).max(axis=2) < 1e-3)
    if grid.any():
        q = np.rint(q)
        ks = np.arange(1, MAX_K + 1, dtype=np.float64)[:, None, None]
        r = np.rint(ks * lo / d)
        u0 = np.maximum(0.0, r)
        fits = (u0 + GRID_STEPS * ks <= 255) & (u0 - r <= 255)
        miss = np.where(fits, d / ks * np.abs(ks * lo / d - r), np.inf)
        pick = miss.argmin(axis=0)
        k = ks[pick, 0, 0]
        r = np.take_along_axis(r, pick[None], axis=0)[0]
        u0 = np.maximum(0.0, r)
        consider(d / k, k[..., None] * q + u0[..., None], u0 - r,
                 grid & np.isfinite(miss.min(axis=0)))
    return best_u, best_s, best_z, best_err


def _source_rows(name: str, tensors: dict[str, Any]) -> np.ndarray | None:
    """The source matrix [N, K] float32 behind a builder initializer (Llama-style names; a
    packed qkv_proj is q, k and v stacked), or None when it cannot be told. ``tensors``:
    each source tensor's name to the safetensors handle holding it."""
    if name.startswith("lm_head."):
        names: list[str] = next(([key] for key in ("lm_head.weight", "model.embed_tokens.weight")
                                 if key in tensors), [])
    else:
        m = re.match(r"model\.layers\.(\d+)\.(attn|mlp)\.(\w+)\.MatMul\.weight_Q8$", name)
        if not m:
            return None
        layer, part, proj = m.groups()
        base = f"model.layers.{layer}." + ("self_attn." if part == "attn" else "mlp.")
        parts = {"qkv_proj": ("q_proj", "k_proj", "v_proj"),
                 "gate_up_proj": ("gate_proj", "up_proj")}.get(proj, (proj,))
        names = [base + p + ".weight" for p in parts]
    if not names or not all(n in tensors for n in names):
        return None
    # Through torch: bf16 has no numpy type.
    return np.concatenate([tensors[n].get_tensor(n).float().numpy() for n in names])


def apply(copy: Path, source: Path) -> dict[str, Any]:
    """Rewrite ``copy``'s 8-bit MatMulNBits blocks from ``source``'s safetensors, in
    place; returns what changed (matrices, mean of the blocks' largest error before and
    after)."""
    import onnx
    from onnx import numpy_helper
    from safetensors import safe_open

    model_file = copy / "model.onnx"
    model = onnx.load(str(model_file), load_external_data=False)
    inits = {t.name: t for t in model.graph.initializer}
    tensors: dict[str, Any] = {}
    for path in sorted(source.glob("*.safetensors")):
        handle = safe_open(str(path), "pt")
        names = handle.keys()  # a safe_open handle is not a mapping
        tensors.update((key, handle) for key in names)
    done, before, after, skipped = 0, [], [], []
    with (copy / "model.onnx.data").open("r+b") as data:
        for node in model.graph.node:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if node.op_type != "MatMulNBits" or attrs.get("bits") != 8 or \
                    attrs.get("block_size") != BLOCK or len(node.input) != 3:
                continue
            b_name, s_name = node.input[1], node.input[2]
            b_init, s_init = inits.get(b_name), inits.get(s_name)
            w = _source_rows(b_name, tensors)
            if w is None or b_init is None or s_init is None or \
                    w.shape != (attrs["N"], attrs["K"]):
                continue  # the builder's own blocks stay
            old_err = _builder_error(data, b_init, s_init, w)
            if old_err is None:
                skipped.append(b_name)
                continue  # the builder's own blocks stay
            # Computed whole before anything is written: a failure leaves the matrix as
            # the builder wrote it.
            u, scales, zp, err = requantize(w)
            whole = slice(0, w.shape[0])
            _write(data, b_init, whole, w.shape[1], u)
            _write(data, s_init, whole, w.shape[1] // BLOCK, scales)
            zp_name = b_name.replace("weight_Q8", "weight_zp")
            model.graph.initializer.append(numpy_helper.from_array(zp.reshape(-1), zp_name))
            node.input.append(zp_name)
            before.append(old_err)
            after.append(err.ravel())
            done += 1
    onnx.save(model, str(model_file))
    return {"matrices": done, "skipped": skipped,
            "mean_block_error_before": float(np.concatenate(before).mean()) if before else None,
            "mean_block_error_after": float(np.concatenate(after).mean()) if after else None}


def _builder_error(data: Any, b_init: Any, s_init: Any, w: np.ndarray) -> np.ndarray | None:
    """The largest error of each of the builder's blocks against ``w``, or None when they
    are not ``w``'s: the builder's blocks (scale max|w| / 128, codes clipped to
    -128..127) are within one step of their source, more means the matrix was matched
    to the wrong source rows."""
    n_rows, n_blocks = w.shape[0], w.shape[1] // BLOCK
    errs = []
    for at in range(0, n_rows, ROWS_AT_ONCE):
        rows = slice(at, min(n_rows, at + ROWS_AT_ONCE))
        x = _as_blocks(w[rows])
        u = _read(data, b_init, rows, n_blocks * BLOCK).reshape(x.shape).astype(np.float64)
        scale = _read(data, s_init, rows, n_blocks).astype(np.float64)
        err = np.abs(scale[..., None] * (u - 128) - x).max(axis=2)
        if (err > np.abs(x).max(axis=2) / 128 * 1.01 + 1e-12).any():
            return None
        errs.append(err.ravel())
    return np.concatenate(errs)


def _external(t: Any) -> tuple[int, int]:
    info = {e.key: e.value for e in t.external_data}
    return int(info.get("offset", 0)), int(info["length"])


def _read(data: Any, t: Any, rows: slice, row_items: int) -> np.ndarray:
    """Rows ``rows`` of initializer ``t`` (``row_items`` values a row)."""
    from onnx import helper, numpy_helper

    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type))
    if not t.external_data:
        return numpy_helper.to_array(t).reshape(-1, row_items)[rows]
    offset, length = _external(t)
    start, stop = rows.start * row_items * dtype.itemsize, rows.stop * row_items * dtype.itemsize
    if stop > length:
        raise ValueError(f"{t.name}: rows past the end of its data")
    data.seek(offset + start)
    return np.frombuffer(data.read(stop - start), dtype=dtype).reshape(-1, row_items)


def _write(data: Any, t: Any, rows: slice, row_items: int, a: np.ndarray) -> None:
    from onnx import numpy_helper

    if not t.external_data:
        whole = numpy_helper.to_array(t).reshape(-1, row_items).copy()
        whole[rows] = a.reshape(whole[rows].shape)
        t.CopyFrom(numpy_helper.from_array(whole.reshape(tuple(t.dims)), t.name))
        return
    offset, length = _external(t)
    raw = np.ascontiguousarray(a).tobytes()
    start = rows.start * row_items * a.dtype.itemsize
    if start + len(raw) > length:
        raise ValueError(f"{t.name}: rows past the end of its data")
    data.seek(offset + start)
    data.write(raw)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m slmchat.engine.model.onnx_requant")
    p.add_argument("copy")
    p.add_argument("source")
    args = p.parse_args(argv)
    print(json.dumps(apply(Path(args.copy), Path(args.source))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
