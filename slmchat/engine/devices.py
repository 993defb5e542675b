"""Device, dtype and thread choices."""

from __future__ import annotations

import os
from typing import Any


def resolve_device(device: str) -> str:
    """auto = CUDA if available, else MPS, else CPU. Explicit requests are validated."""
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available here")
        return device
    if device == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError("device 'mps' requested but MPS is not available here")
        return device
    if device == "cpu":
        return device
    raise ValueError(f"unknown device {device!r} (choose auto, cpu, cuda, cuda:N or mps)")


def resolve_dtype(dtype: str, device: str) -> Any:
    """auto = bf16 on CUDA with bf16 support (else fp16), fp16 on MPS, fp32 on the CPU.

    fp32 stays the CPU default because it is the exact reference path; bf16 is one flag
    away (faster prefill with AMX, see the benchmark).
    """
    import torch

    table = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if dtype in table:
        return table[dtype]
    if dtype != "auto":
        raise ValueError(f"unknown dtype {dtype!r} (choose auto, fp32, bf16 or fp16)")
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


def physical_cores() -> int:
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
    except Exception:
        n = None
    return max(1, n or os.cpu_count() or 1)


def thread_count(reserve: int = 0) -> int:
    """The physical cores (hyper-threads slow matmuls down), minus ``reserve``;
    SLMCHAT_THREADS overrides. Needs no torch (the onnx runtime sets its own threads)."""
    n = max(1, physical_cores() - reserve)
    if os.environ.get("SLMCHAT_THREADS", "").isdigit():
        n = max(1, int(os.environ["SLMCHAT_THREADS"]))
    return n


def chat_thread_count(training: bool = False) -> int:
    """Threads for a chat reply: all physical cores, or half when a fine-tune runs
    beside it (``training``), so the reply keeps streaming while the job trains."""
    cores = physical_cores()
    return thread_count(reserve=cores - max(1, cores // 2) if training else 0)


def gpu_possible() -> bool:
    """Whether a GPU could be here, answered without importing torch (seconds on a small
    CPU): an NVIDIA driver, or Apple silicon (MPS). When False, "auto" means the CPU."""
    import platform

    if os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl"):
        return True
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def configure_threads(reserve: int = 0) -> int:
    """Use the physical cores (hyper-threads slow matmuls down), minus ``reserve``.

    Oversubscribing cores is far worse than leaving one idle: torch's OpenMP workers
    spin at barriers, and with a fine-tune on the same 2 cores a 2-thread decode was
    measured several times slower than a 1-thread one. SLMCHAT_THREADS overrides.
    """
    import torch

    n = thread_count(reserve)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def chat_threads(training: bool = False) -> int:
    """Set torch's threads for a chat reply (see chat_thread_count)."""
    cores = physical_cores()
    reserve = cores - max(1, cores // 2) if training else 0
    return configure_threads(reserve=reserve)


# Instruction sets that decide which CPU kernels run (torch, ONNX Runtime, llama.cpp),
# as /proc/cpuinfo names them, with the name people use.
CPU_FEATURES = {
    "avx2": "AVX2", "fma": "FMA", "f16c": "F16C", "avx512f": "AVX-512",
    "avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI", "avx512_bf16": "AVX-512 BF16",
    "amx_tile": "AMX", "amx_bf16": "AMX-BF16", "amx_int8": "AMX-INT8",
}


def cpu_info(cpuinfo: str | None = None) -> dict[str, Any]:
    """CPU model and the instruction sets above that it has (Linux /proc/cpuinfo; other
    systems get the model from ``platform`` and no flags)."""
    import platform

    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                cpuinfo = fh.read()
        except OSError:
            cpuinfo = ""
    model, flags = "", set[str]()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return {
        "model": model or platform.processor() or platform.machine() or "unknown",
        "features": [label for flag, label in CPU_FEATURES.items() if flag in flags],
        "logical_cores": os.cpu_count() or 1,
        "physical_cores": physical_cores(),
    }


MIN_SPAN_S = 0.25  # the shortest window BusyCores.others reads (10 ms ticks: +-0.1 core)


class BusyCores:
    """How many cores other processes kept busy since the last look (ours excluded).

    ONNX Runtime's thread pool spin-waits between operators: with other work on the
    cores its threads wait for each other's lost time slices. Measured on 2 cores with
    other jobs running: 1 thread decoded 22-31 tok/s where 2 threads managed 13-16 (and
    2 threads win on idle cores). The onnx runtime therefore sizes its threads to the
    cores that are actually free. Our own CPU time is subtracted, so a long reply does
    not make the next one think the machine is busy.
    """

    def __init__(self) -> None:
        self._last: tuple[float, float, float] | None = None

    @staticmethod
    def _sample() -> tuple[float, float, float]:
        import time

        import psutil

        sys_t = psutil.cpu_times()
        busy = sum(sys_t) - sys_t.idle - getattr(sys_t, "iowait", 0.0)
        own = psutil.Process().cpu_times()
        return time.monotonic(), busy, own.user + own.system

    def prime(self) -> None:
        """Start a window now (the next others() covers the time from here)."""
        self._last = self._sample()

    def others(self, min_window_s: float = 0.1, min_span_s: float = MIN_SPAN_S) -> float | None:
        """Average busy cores of other processes over the window since the last call.

        A first look waits ``min_window_s`` for a window. A primed window shorter than
        ``min_span_s`` gives no verdict (None) and keeps growing: the kernel counts CPU
        time in 10 ms ticks, so over the few milliseconds between a load and the first
        reply one tick reads as a whole busy core (a cold `generate` then dropped to one
        thread, reloading the session: +0.2 s and +135 MB in half of the runs)."""
        import time

        if self._last is None:
            self._last = self._sample()
            time.sleep(min_window_s)
        elif time.monotonic() - self._last[0] < min_span_s:
            return None
        now = self._sample()
        then, self._last = self._last, now
        wall = now[0] - then[0]
        if wall <= 0:
            return None
        return max(0.0, ((now[1] - then[1]) - (now[2] - then[2])) / wall)


def onnx_thread_count(watch: BusyCores, training: bool = False,
                      current: int | None = None) -> int:
    """Threads for the onnx runtime: chat_thread_count, capped to the cores that other
    processes left free (at least 1). SLMCHAT_THREADS wins. ``current``: the count in
    use, kept when the watch's window is too short to tell."""
    n = chat_thread_count(training)
    if os.environ.get("SLMCHAT_THREADS", "").isdigit():
        return n
    try:
        busy = watch.others()
        if busy is None:
            return current if current is not None else n
        free = physical_cores() - busy
    except Exception:  # psutil unavailable or /proc unreadable: keep the plain count
        return n
    return max(1, min(n, int(free + 0.5)))
