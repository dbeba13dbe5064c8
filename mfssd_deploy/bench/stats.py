"""Latency statistics and the machine facts every benchmark row is read against."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mfssd_deploy.timing import time_calls


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
            env["cuda"] = torch.version.cuda
            env["gpu_driver"] = gpu_driver()
    except ImportError:
        pass
    return env


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def gpu_driver(proc_version: str = "/proc/driver/nvidia/version", tegra_release: str = "/etc/nv_tegra_release"
               ) -> str | None:  # fmt: skip
    """The NVIDIA driver version (desktop: the kernel module's; Jetson: the L4T release), or None."""
    m = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", _read(proc_version))
    if m:
        return m.group(1)
    m = re.search(r"R(\d+) \(release\), REVISION: ([\d.]+)", _read(tegra_release))
    if m:
        return f"L4T R{m.group(1)}.{m.group(2)}"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout.strip()  # fmt: skip
        return out.splitlines()[0] if out else None
    return None


def _ort_matmul(n: int) -> Callable[[], Any]:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    def spec(name: str) -> Any:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, n])

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "B"], ["C"])], "peak", [spec("A"), spec("B")], [spec("C")]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {k: rng.standard_normal((n, n), dtype=np.float32) for k in ("A", "B")}
    return lambda: session.run(None, feed)


def fp32_peaks(n: int = 2048, repeats: int = 5) -> dict[str, float]:
    """GFLOP/s of a large float32 matmul in each library at hand, best of `repeats`.

    Libraries differ a lot on the same cores (measured here: ONNX Runtime's MLAS 460, torch 205,
    numpy's OpenBLAS pinned by OPENBLAS_CORETYPE 107), so the machine's peak is the best of them.
    """
    fns: dict[str, Callable[[], Any]] = {}
    with contextlib.suppress(ImportError):  # onnx is an export extra; without it the others still measure
        fns["onnxruntime"] = _ort_matmul(n)
    try:
        import torch

        a_t, b_t = torch.randn(n, n), torch.randn(n, n)
        fns["torch"] = lambda: a_t @ b_t
    except ImportError:
        pass
    if not fns:
        rng = np.random.default_rng(0)
        a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
        fns["numpy"] = lambda: a @ b
    return {k: 2 * n**3 / min(time_calls(f, warmup=1, iters=repeats)) / 1e9 for k, f in fns.items()}


def gpu_fp32_peak(n: int = 4096, repeats: int = 5) -> float | None:
    """GFLOP/s of a large FP32 matmul on the CUDA GPU (TF32 off: it is the FP32 peak), or None without one.

    GPU rows are read against this, CPU rows against fp32_peaks: one device's peak says nothing of the other's.
    """
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    a, b = (torch.randn(n, n, device="cuda") for _ in range(2))
    allow = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:

        def call() -> None:
            a @ b
            torch.cuda.synchronize()

        return 2 * n**3 / min(time_calls(call, warmup=2, iters=repeats)) / 1e9
    finally:
        torch.backends.cuda.matmul.allow_tf32 = allow


def peak_fp32_gflops(n: int = 2048, repeats: int = 5) -> float:
    """The machine's achievable FP32 rate: the best library's large-matmul GFLOP/s."""
    return max(fp32_peaks(n, repeats).values())
