"""ONNX Runtime GenAI through its C API (ctypes), so that a forward lets other threads run.

The Python module of onnxruntime-genai holds the GIL for the whole of ``append_tokens``:
while a 6k-token prompt was read, no other Python thread ran, and the server's event loop
answered ``GET /api/version`` after 0.6-0.9 s per 512-token chunk (issue 26, item 4).
ctypes releases the GIL around every foreign call, so the same shared library, called
through the C API it exports (``ort_genai_c.h``), lets the event loop, the app's UI thread
and a cancel flag run while the model reads a prompt. Only the calls the onnx backend
needs are bound: a model from a config folder with a JSON overlay, a generator with a
maximum length, append, last-token logits, rewind.

The Python module is imported first: it loads the library (and the ONNX Runtime it links)
the way the package expects, and ``CDLL`` of the same path then returns that same
library, so both APIs share one runtime.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

_P = ctypes.c_void_p
_DTYPES: dict[int, np.dtype[Any]] = {1: np.dtype(np.float32), 10: np.dtype(np.float16)}  # OgaElementType


class OgaError(RuntimeError):
    """An error reported by ONNX Runtime GenAI (its message, one line)."""


@cache
def _lib() -> Any:
    import onnxruntime_genai as og

    path = Path(og.__file__).parent / "libonnxruntime-genai.so"
    lib = ctypes.CDLL(str(path))
    sig = {
        "OgaResultGetError": (ctypes.c_char_p, [_P]),
        "OgaDestroyResult": (None, [_P]),
        "OgaCreateConfig": (_P, [ctypes.c_char_p, ctypes.POINTER(_P)]),
        "OgaConfigOverlay": (_P, [_P, ctypes.c_char_p]),
        "OgaDestroyConfig": (None, [_P]),
        "OgaCreateModelFromConfig": (_P, [_P, ctypes.POINTER(_P)]),
        "OgaDestroyModel": (None, [_P]),
        "OgaCreateGeneratorParams": (_P, [_P, ctypes.POINTER(_P)]),
        "OgaGeneratorParamsSetSearchNumber": (_P, [_P, ctypes.c_char_p, ctypes.c_double]),
        "OgaGeneratorParamsSetSearchBool": (_P, [_P, ctypes.c_char_p, ctypes.c_bool]),
        "OgaDestroyGeneratorParams": (None, [_P]),
        "OgaCreateGenerator": (_P, [_P, _P, ctypes.POINTER(_P)]),
        "OgaDestroyGenerator": (None, [_P]),
        "OgaGenerator_AppendTokens": (_P, [_P, ctypes.POINTER(ctypes.c_int32), ctypes.c_size_t]),
        "OgaGenerator_GetLogits": (_P, [_P, ctypes.POINTER(_P)]),
        "OgaGenerator_GetOutput": (_P, [_P, ctypes.c_char_p, ctypes.POINTER(_P)]),
        "OgaGenerator_RewindTo": (_P, [_P, ctypes.c_size_t]),
        "OgaTensorGetType": (_P, [_P, ctypes.POINTER(ctypes.c_int)]),
        "OgaTensorGetShapeRank": (_P, [_P, ctypes.POINTER(ctypes.c_size_t)]),
        "OgaTensorGetShape": (_P, [_P, ctypes.POINTER(ctypes.c_int64), ctypes.c_size_t]),
        "OgaTensorGetData": (_P, [_P, ctypes.POINTER(_P)]),
        "OgaDestroyTensor": (None, [_P]),
    }
    for name, (restype, argtypes) in sig.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


def _check(result: int | None) -> None:
    """An OgaResult pointer is NULL on success; otherwise raise its message and free it."""
    if not result:
        return
    lib = _lib()
    raw = lib.OgaResultGetError(result)
    message = raw.decode("utf-8", "replace") if raw else "unknown error"
    lib.OgaDestroyResult(result)
    raise OgaError(message.strip().splitlines()[0] if message.strip() else "unknown error")


class Model:
    """An OgaModel made from a model folder, with ``overlay`` JSON over its genai_config."""

    def __init__(self, folder: str | Path, overlay: str | None = None) -> None:
        lib = _lib()
        self._h = _P()
        cfg = _P()
        _check(lib.OgaCreateConfig(str(folder).encode(), ctypes.byref(cfg)))
        try:
            if overlay:
                _check(lib.OgaConfigOverlay(cfg, overlay.encode()))
            _check(lib.OgaCreateModelFromConfig(cfg, ctypes.byref(self._h)))
        finally:
            lib.OgaDestroyConfig(cfg)

    @property
    def handle(self) -> Any:
        return self._h

    def __del__(self) -> None:
        if getattr(self, "_h", None):
            _lib().OgaDestroyModel(self._h)
            self._h = _P()


class Generator:
    """One sequence's KV cache on a Model, greedy search options (we sample ourselves)."""

    def __init__(self, model: Model, max_length: int) -> None:
        lib = _lib()
        self._model = model  # the generator must not outlive its model
        self._h = _P()
        params = _P()
        _check(lib.OgaCreateGeneratorParams(model.handle, ctypes.byref(params)))
        try:
            _check(lib.OgaGeneratorParamsSetSearchNumber(params, b"max_length", float(max_length)))
            _check(lib.OgaGeneratorParamsSetSearchBool(params, b"do_sample", False))
            _check(lib.OgaCreateGenerator(model.handle, params, ctypes.byref(self._h)))
        finally:
            lib.OgaDestroyGeneratorParams(params)

    def append_tokens(self, ids: Sequence[int]) -> None:
        """Run the model over ``ids`` (the GIL is released for the whole forward)."""
        arr = np.ascontiguousarray(ids, dtype=np.int32)
        if arr.size == 0:
            return
        _check(_lib().OgaGenerator_AppendTokens(
            self._h, arr.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), arr.size))

    def get_logits(self) -> np.ndarray:
        """The last position's logits as float32 (a copy; the tensor is freed)."""
        tensor = _P()
        _check(_lib().OgaGenerator_GetLogits(self._h, ctypes.byref(tensor)))
        return _read_tensor(tensor)

    def get_output(self, name: str) -> np.ndarray:
        """The last forward's output ``name`` (e.g. every position's "logits" of a copy
        built with full logits) as float32, in its shape."""
        tensor = _P()
        _check(_lib().OgaGenerator_GetOutput(self._h, name.encode(), ctypes.byref(tensor)))
        return _read_tensor(tensor)

    def rewind_to(self, n: int) -> None:
        _check(_lib().OgaGenerator_RewindTo(self._h, int(n)))

    def __del__(self) -> None:
        if getattr(self, "_h", None):
            _lib().OgaDestroyGenerator(self._h)
            self._h = _P()


def _read_tensor(tensor: Any) -> np.ndarray:
    """Copy a float OgaTensor into a float32 array of its shape, then free the tensor."""
    lib = _lib()
    try:
        kind, rank, data = ctypes.c_int(), ctypes.c_size_t(), _P()
        _check(lib.OgaTensorGetType(tensor, ctypes.byref(kind)))
        _check(lib.OgaTensorGetShapeRank(tensor, ctypes.byref(rank)))
        dims = (ctypes.c_int64 * rank.value)()
        _check(lib.OgaTensorGetShape(tensor, dims, rank.value))
        _check(lib.OgaTensorGetData(tensor, ctypes.byref(data)))
        shape = tuple(int(d) for d in dims)
        count = int(np.prod(shape)) if shape else 1
        dtype = _DTYPES.get(kind.value)
        if dtype is None:
            raise OgaError(f"outputs of element type {kind.value} are not supported")
        if not data.value or count == 0:
            raise OgaError("the model returned an empty output")
        buf = (ctypes.c_char * (count * dtype.itemsize)).from_address(data.value)
        return np.frombuffer(memoryview(buf), dtype=dtype).astype(np.float32).reshape(shape)
    finally:
        lib.OgaDestroyTensor(tensor)
