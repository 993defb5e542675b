"""Int8 blocks that hold a GGUF model's weights exactly, for the ONNX copies.

ONNX Runtime GenAI's builder quantizes each block of 32 weights symmetrically
(``scale = max|w| / 128``, codes -128..127, zero point 128). For weights that are already quantized,
such as the default model's Q4_1 file (each block ``d * q + m``, q in 0..15), that adds
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
    outs = [_rows(w[at:at + ROWS_AT_ONCE]) for at in range(0, n, ROWS_AT_ONCE)]
    return tuple(np.concatenate([o[i] for o in outs]) for i in range(4))  # type: ignore[return-value]


def _rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x = w.astype(np.float64).reshape(w.shape[0], -1, BLOCK)
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
    """The source matrix [N, K] behind a builder initializer (Llama-style names; a packed
    qkv_proj is q, k and v stacked), or None when it cannot be told."""
    if name.startswith("lm_head."):
        for key in ("lm_head.weight", "model.embed_tokens.weight"):
            if key in tensors:
                return np.asarray(tensors[key], dtype=np.float32)
        return None
    m = re.match(r"model\.layers\.(\d+)\.(attn|mlp)\.(\w+)\.MatMul\.weight_Q8$", name)
    if not m:
        return None
    layer, part, proj = m.groups()
    base = f"model.layers.{layer}." + ("self_attn." if part == "attn" else "mlp.")
    names = ([base + p + ".weight" for p in ("q_proj", "k_proj", "v_proj")]
             if proj == "qkv_proj" else
             [base + p + ".weight" for p in ("gate_proj", "up_proj")]
             if proj == "gate_up_proj" else [base + proj + ".weight"])
    if not all(n in tensors for n in names):
        return None
    return np.concatenate([np.asarray(tensors[n], dtype=np.float32) for n in names])


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
    handles = [safe_open(str(p), "pt") for p in sorted(source.glob("*.safetensors"))]
    tensors: dict[str, Any] = {}
    for h in handles:
        names = h.keys()  # a safe_open handle is not a mapping
        for key in names:
            tensors[key] = _Lazy(h, key)
    data_file = copy / "model.onnx.data"
    done, before, after, skipped = 0, [], [], []
    with data_file.open("r+b") as data:
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
            # Everything computed before anything is written: a failure leaves the
            # matrix as the builder wrote it.
            n_rows, n_blocks = w.shape[0], w.shape[1] // BLOCK
            parts, olds, news = [], [], []
            for at in range(0, n_rows, ROWS_AT_ONCE):
                rows = slice(at, min(n_rows, at + ROWS_AT_ONCE))
                x = w[rows].astype(np.float64).reshape(-1, n_blocks, BLOCK)
                old_u = _read(data, b_init, rows, n_blocks * BLOCK).reshape(x.shape)
                old_s = _read(data, s_init, rows, n_blocks).astype(np.float64)
                old = old_s[..., None] * (old_u.astype(np.float64) - 128)
                old_err = np.abs(old - x).max(axis=2)
                # The builder's blocks (scale max|w| / 128, codes clipped to -128..127)
                # are this source's within one step; more means the matrix was matched
                # to the wrong source rows.
                if (old_err > np.abs(x).max(axis=2) / 128 * 1.01 + 1e-12).any():
                    skipped.append(b_name)
                    break
                olds.append(old_err.ravel())
                u, scales, zp, err = _rows(w[rows])
                news.append(err.ravel())
                parts.append((rows, u, scales, zp))
            if skipped and skipped[-1] == b_name:
                continue  # the builder's own blocks stay
            before.extend(olds)
            after.extend(news)
            for rows, u, scales, _ in parts:
                _write(data, b_init, rows, n_blocks * BLOCK, u)
                _write(data, s_init, rows, n_blocks, scales.astype(np.float32))
            zp = np.concatenate([p[3] for p in parts])
            zp_name = b_name.replace("weight_Q8", "weight_zp")
            zp_tensor = numpy_helper.from_array(zp.reshape(-1).astype(np.uint8), zp_name)
            model.graph.initializer.append(zp_tensor)
            node.input.append(zp_name)
            done += 1
    onnx.save(model, str(model_file))
    return {"matrices": done, "skipped": skipped,
            "mean_block_error_before": float(np.concatenate(before).mean()) if before else None,
            "mean_block_error_after": float(np.concatenate(after).mean()) if after else None}


class _Lazy:
    """A safetensors tensor read when first used (np.asarray), as float32."""

    def __init__(self, handle: Any, key: str) -> None:
        self.handle, self.key = handle, key

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self.handle.get_tensor(self.key).float().numpy()  # bf16 has no numpy type
        return a.astype(dtype) if dtype is not None else a


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
