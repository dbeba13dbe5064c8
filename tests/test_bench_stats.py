from __future__ import annotations

import numpy as np
import pytest

from mfssd_deploy.bench.stats import environment, latency_stats, peak_fp32_gflops
from mfssd_deploy.timing import time_calls


def test_latency_stats_against_numpy() -> None:
    rng = np.random.default_rng(0)
    secs = list(rng.uniform(0.01, 0.05, 101))
    s = latency_stats(secs, batch=8)
    ms = np.array(secs) * 1000
    assert s["latency_ms"]["p50"] == pytest.approx(np.median(ms))
    assert s["latency_ms"]["p99"] == pytest.approx(np.percentile(ms, 99))
    assert s["latency_ms"]["mean"] == pytest.approx(ms.mean())
    assert s["images_per_s"] == pytest.approx(8 / np.median(secs))
    with pytest.raises(ValueError):
        latency_stats([], 1)


def test_time_calls_counts_and_warmup() -> None:
    calls = []
    out = time_calls(lambda: calls.append(1), warmup=3, iters=5)
    assert len(out) == 5 and len(calls) == 8
    assert len(time_calls(lambda: None, warmup=0, iters=None, seconds=0.01)) >= 1


def test_environment_and_peak() -> None:
    env = environment()
    assert env["cpu"] and env["onnxruntime"] and env["numpy"]
    assert peak_fp32_gflops(n=256, repeats=2) > 1.0


def test_model_facts_are_the_measured_architecture(artifacts: dict) -> None:  # type: ignore[type-arg]
    from mfssd_deploy import Detector
    from mfssd_deploy.bench.model_size import model_facts
    from mfssd_deploy.complexity import measure
    from mfssd_deploy.models import build_from_config, build_model

    det = Detector(artifacts["int8"])
    c = measure(build_from_config(det.config))
    assert model_facts(det.config) == (c.params, pytest.approx(c.gflops))
    full = build_model("mfssd_bn")
    params, gflops = model_facts(full.config)
    assert params == 33_713_888 and gflops == pytest.approx(2 * 39.516, abs=0.01)


def test_gpu_driver_from_the_kernel_module_or_the_jetson_release(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    from mfssd_deploy.bench.stats import gpu_driver

    desktop = tmp_path / "version"
    desktop.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n"
                       "GCC version:  gcc version 12.3.0\n")  # fmt: skip
    open_kernel = tmp_path / "version-open"
    open_kernel.write_text("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.14  Release Build\n")
    tegra = tmp_path / "nv_tegra_release"
    tegra.write_text("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64\n")
    missing = str(tmp_path / "missing")
    assert gpu_driver(str(desktop), missing) == "535.104.05"
    assert gpu_driver(str(open_kernel), missing) == "550.54.14"
    assert gpu_driver(missing, str(tegra)) == "L4T R35.4.1"

    def no_smi(*a, **k):  # type: ignore[no-untyped-def]
        raise FileNotFoundError("nvidia-smi")

    monkeypatch.setattr(subprocess, "run", no_smi)
    assert gpu_driver(missing, missing) is None


def test_each_row_is_read_against_its_own_devices_peak() -> None:
    from mfssd_deploy.bench.run import format_text as _text
    from mfssd_deploy.bench.run import peak_for

    env = {"peak_fp32_gflops": 400.0, "peak_fp32_gflops_gpu": 11000.0}
    assert peak_for({"device": "cpu"}, env) == 400.0 and peak_for({"device": "cuda"}, env) == 11000.0
    assert peak_for({"device": "cuda"}, {"peak_fp32_gflops": 400.0}) is None  # never the CPU's peak for a GPU row
    env.update(cpu="x", threads=2, torch="2", onnxruntime="1", tensorrt="8.6.1", fp32_matmul_gflops={"torch": 400.0},
               peak_rss_mb=1.0, gpu="NVIDIA GeForce GTX 1080 Ti", compute_capability=[6, 1], cuda="12.1",
               gpu_driver="535.104.05")  # fmt: skip
    head = _text({"env": env, "rows": [], "speed_ratios": [], "targets": []}).splitlines()[:2]
    assert "GPU NVIDIA GeForce GTX 1080 Ti (sm_61, CUDA 12.1, driver 535.104.05)" in head[0]
    assert "GPU FP32 peak 11000 GFLOP/s" in head[1]
