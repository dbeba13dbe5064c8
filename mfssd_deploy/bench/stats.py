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


def _qdq_matmul(n: int) -> Any:
    """An ONNX graph computing X @ W as INT8: X quantized to uint8, W an int8 constant, both through
    DequantizeLinear into MatMul; the form our INT8 convs take, which each runtime fuses into a
    u8 x s8 GEMM (ONNX Runtime: MatMulIntegerToFloat; OpenVINO: an INT8 FullyConnected)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        # 7-bit weights: without VNNI (AVX2 only) u8 x s8 pairs are summed in int16 (vpmaddubsw), which full-range
        # weights overflow (255 * 127 * 2 > 32767): measured on an AMD EPYC Zen 3, 72% of a 64x64 product wrong.
        # The same instructions run either way, so the figure is the same GEMM rate on every CPU.
        numpy_helper.from_array(rng.integers(-64, 64, (n, n), dtype=np.int8), "W"),
        numpy_helper.from_array(np.array(0.01, np.float32), "w_scale"),
        numpy_helper.from_array(np.array(0, np.int8), "w_zero"),
        numpy_helper.from_array(np.array(1 / 255, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(0, np.uint8), "x_zero"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["X", "x_scale", "x_zero"], ["Xq"]),
        helper.make_node("DequantizeLinear", ["Xq", "x_scale", "x_zero"], ["Xd"]),
        helper.make_node("DequantizeLinear", ["W", "w_scale", "w_zero"], ["Wd"]),
        helper.make_node("MatMul", ["Xd", "Wd"], ["Y"]),
    ]
    io = [helper.make_tensor_value_info(k, TensorProto.FLOAT, [n, n]) for k in ("X", "Y")]
    graph = helper.make_graph(nodes, "int8_peak", [io[0]], [io[1]], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def int8_peaks(n: int = 2048, repeats: int = 5) -> dict[str, float]:
    """GOP/s of a large u8 x s8 matmul in each runtime at hand, best of `repeats`: what INT8 rows are
    read against (the FP32 peak says nothing of the int8 rate: 3x it on a VNNI-only EPYC, 7.7x on an AMX Xeon).
    Where the rows outrun it (OpenVINO's INT8 convolutions on AMX do), it is no ceiling: report.py says so.

    ONNX Runtime twice: MatMulInteger (the bare integer GEMM) and the Q/DQ graph of _qdq_matmul (what a
    Q/DQ model runs); OpenVINO on the same Q/DQ graph. Runtimes that are not installed are left out.
    """
    fns: dict[str, Callable[[], Any]] = {}
    rng = np.random.default_rng(0)
    x = rng.random((n, n), dtype=np.float32)
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            [helper.make_node("MatMulInteger", ["A", "B"], ["C"])], "int8_gemm",
            [helper.make_tensor_value_info("A", TensorProto.UINT8, [n, n]),
             helper.make_tensor_value_info("B", TensorProto.INT8, [n, n])],
            [helper.make_tensor_value_info("C", TensorProto.INT32, [n, n])],
        )  # fmt: skip
        bare = ort.InferenceSession(
            helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString(),
            providers=["CPUExecutionProvider"],
        )
        feed = {"A": rng.integers(0, 256, (n, n), dtype=np.uint8), "B": rng.integers(-127, 128, (n, n), dtype=np.int8)}
        fns["onnxruntime MatMulInteger"] = lambda: bare.run(None, feed)
        qdq = _qdq_matmul(n)
        session = ort.InferenceSession(qdq.SerializeToString(), providers=["CPUExecutionProvider"])
        fns["onnxruntime Q/DQ MatMul"] = lambda: session.run(None, {"X": x})
    except ImportError:
        pass
    try:
        import tempfile
        from pathlib import Path

        import onnx
        import openvino as ov

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "int8_peak.onnx"
            onnx.save(_qdq_matmul(n), path)
            compiled = ov.Core().compile_model(str(path), "CPU", {"PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        fns["openvino Q/DQ MatMul"] = lambda: request.infer({0: x})
    except ImportError:
        pass
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
