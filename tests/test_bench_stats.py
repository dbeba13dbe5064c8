from __future__ import annotations

import numpy as np
import pytest

from mfssd_deploy.bench.stats import environment, latency_stats, peak_fp32_gflops, time_calls


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


def test_bench_row_follows_the_contract(artifacts: dict) -> None:  # type: ignore[type-arg]
    import cv2

    from mfssd_deploy import Detector
    from mfssd_deploy.bench.rows import bench_detector
    from mfssd_deploy.complexity import measure
    from mfssd_deploy.models import build_from_config

    det = Detector(artifacts["int8"], batch_size=4)
    imgs = [cv2.imread(str(p)) for p in sorted(artifacts["imgs"].iterdir())]
    row = bench_detector(det, imgs, batch=4, iters=3, peak_gflops=100.0)
    assert {"model", "backend", "precision", "layout", "batch", "images_per_s", "latency_ms", "stages_ms", "gflops",
            "params", "size_mb"} <= set(row)  # fmt: skip
    assert row["precision"] == "int8-qdq" and row["layout"] == "end2end" and row["iters"] == 3
    assert set(row["latency_ms"]) == {"mean", "p50", "p90", "p99"} and set(row["stages_ms"]) == {"pre", "infer", "post"}
    c = measure(build_from_config(det.config))
    assert row["params"] == c.params and row["gflops"] == pytest.approx(c.gflops)
    assert row["fraction_of_peak"] == pytest.approx(row["achieved_gflops_per_s"] / 100.0)
    assert sum(row["stages_ms"].values()) <= row["latency_ms"]["p99"] * 1.5
