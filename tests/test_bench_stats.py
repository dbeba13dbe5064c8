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


def test_model_facts_are_the_measured_architecture(artifacts: dict) -> None:  # type: ignore[type-arg]
    from mfssd_deploy import Detector
    from mfssd_deploy.bench.facts import model_facts
    from mfssd_deploy.complexity import measure
    from mfssd_deploy.models import build_from_config, build_model

    det = Detector(artifacts["int8"])
    c = measure(build_from_config(det.config))
    assert model_facts(det.config) == (c.params, pytest.approx(c.gflops))
    full = build_model("mfssd_bn")
    params, gflops = model_facts(full.config)
    assert params == 33_713_888 and gflops == pytest.approx(2 * 39.516, abs=0.01)
