"""Latency statistics and the machine facts every benchmark row is read against."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def latency_stats(seconds: Sequence[float], batch: int) -> dict[str, Any]:
    """Per-batch latencies -> mean/p50/p90/p99 in ms per batch, and images/s from the median."""
    if not seconds:
        raise ValueError("no timings")
    ms = np.asarray(seconds, dtype=np.float64) * 1000
    p50 = float(np.percentile(ms, 50))
    return {
        "latency_ms": {"mean": float(ms.mean()), "p50": p50, "p90": float(np.percentile(ms, 90)),
                       "p99": float(np.percentile(ms, 99))},
        "images_per_s": batch * 1000 / p50,
        "iters": len(ms),
    }  # fmt: skip


def time_calls(fn: Callable[[], Any], *, warmup: int = 2, iters: int | None = 10, seconds: float | None = None
               ) -> list[float]:  # fmt: skip
    """Wall time of each call after `warmup` calls; stop after `iters` calls or `seconds` of timing."""
    for _ in range(warmup):
        fn()
    out: list[float] = []
    start = time.perf_counter()
    while True:
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
        if iters is not None and len(out) >= iters:
            break
        if seconds is not None and time.perf_counter() - start >= seconds:
            break
        if iters is None and seconds is None:
            break
    return out


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """CPU, threads, library versions, and the GPU when there is one."""
    env: dict[str, Any] = {"cpu": cpu_name(), "cpu_threads": os.cpu_count(), "python": platform.python_version(),
                           "platform": platform.platform()}  # fmt: skip
    for mod in ("numpy", "onnxruntime", "torch", "torchvision", "tensorrt"):
        try:
            m = __import__(mod)
            env[mod] = getattr(m, "__version__", None)
        except ImportError:
            env[mod] = None
    try:
        import torch

        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name()
            env["compute_capability"] = list(torch.cuda.get_device_capability())
    except ImportError:
        pass
    return env


def peak_fp32_gflops(n: int = 2048, repeats: int = 5) -> float:
    """The machine's achievable FP32 rate: a large float32 matmul, best of `repeats`.

    torch's matmul (oneDNN/MKL) when torch is installed: numpy's OpenBLAS may be pinned to an older
    kernel (OPENBLAS_CORETYPE, set on some machines) and read about half the real peak (measured
    here: 107 vs 200 GFLOP/s).
    """
    try:
        import torch

        a_t, b_t = torch.randn(n, n), torch.randn(n, n)
        best = min(time_calls(lambda: a_t @ b_t, warmup=1, iters=repeats))
    except ImportError:
        rng = np.random.default_rng(0)
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        best = min(time_calls(lambda: a @ b, warmup=1, iters=repeats))
    return 2 * n**3 / best / 1e9
