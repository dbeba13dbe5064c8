"""The timing protocol and the full-size configurations (no model is timed for real here)."""

from __future__ import annotations

import numpy as np
import pytest

from mfssd_deploy.bench import harness


def _runner(name: str, log: list[str], cost: float = 0.0, stages: bool = True) -> harness.Runner:
    import time

    def run(images: list[np.ndarray]) -> dict[str, float] | None:
        log.append(name)
        if cost:
            time.sleep(cost)
        return {"pre": 1.0, "infer": 8.0, "post": 1.0 + len(images)} if stages else None

    return harness.Runner({"model": name, "group": "demo", "format": "x", "gflops": 2.0}, run)


def test_calls_alternate_round_by_round() -> None:
    log: list[str] = []
    runners = [_runner("A", log), _runner("B", log)]
    out = harness.interleaved(runners, [np.zeros((2, 2, 3), np.uint8)] * 3, warmup=1, iters=3, seconds=None)
    assert log == ["A", "B"] + ["A", "B"] * 3  # warm-up, then A B A B A B
    assert [len(t) for t, _ in out] == [3, 3]
    assert out[0][1][0] == {"pre": 1.0, "infer": 8.0, "post": 4.0}


def test_time_budget_gives_fast_configurations_more_calls_and_stays_interleaved() -> None:
    log: list[str] = []
    runners = [_runner("fast", log, 0.001), _runner("slow", log, 0.02)]
    out = harness.interleaved(runners, [], warmup=1, seconds=0.1, iters=None)
    fast, slow = (len(t) for t, _ in out)
    assert slow >= 3 and fast > 2 * slow
    timed = log[2:]
    # every round holds both configurations: the slow one never runs all its calls in one block
    firsts = [i for i, n in enumerate(timed) if n == "slow"]
    assert firsts[0] < len(timed) // 2 and firsts[-1] > len(timed) // 2


def test_row_contract_and_roofline() -> None:
    r = _runner("A", [])
    r.facts["memory"] = {"peak_rss_mb": 12.0, "baseline_mb": 5.0}
    row = harness.make_row(r, 4, [0.1, 0.2, 0.3], [{"pre": 1, "infer": 2, "post": 3}] * 3, peak_gflops=100.0)
    assert row["images_per_s"] == pytest.approx(4 / 0.2)
    assert row["achieved_gflops_per_s"] == pytest.approx(2.0 * 20)
    assert row["fraction_of_peak"] == pytest.approx(0.4)
    assert row["stages_ms"] == {"pre": 1, "infer": 2, "post": 3} and row["memory_mb"] == 12.0
    assert set(row["latency_ms"]) == {"mean", "p50", "p90", "p99"} and row["batch"] == 4
    peer = harness.make_row(_runner("P", [], stages=False), 1, [0.5], [], None)
    assert peer["stages_ms"] is None and peer["fraction_of_peak"] is None


def test_batch_of_cycles_the_same_images() -> None:
    imgs = [np.full((2, 2, 3), i, np.uint8) for i in range(3)]
    assert [int(a[0, 0, 0]) for a in harness.batch_of(imgs, 8)] == [0, 1, 2, 0, 1, 2, 0, 1]


def test_soak_sees_a_leak_and_no_growth_without_one() -> None:
    """In a fresh process: memory freed by earlier tests would otherwise absorb the leak."""
    import json
    import subprocess
    import sys

    code = """
import json, numpy as np
from mfssd_deploy.bench import harness
kept = []
def leaky(images):
    kept.append(np.ones(2**20 // 8 * 4))  # 4 MiB held forever
steady = harness.soak(harness.Runner({}, lambda imgs: {"pre": 0.0}), [], 50)
leak = harness.soak(harness.Runner({}, leaky), [], 50)
print(json.dumps([steady, leak]))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    steady, leak = json.loads(proc.stdout)
    assert leak["growth_mb"] > 150 and leak["growth_second_half_mb"] > 75
    assert abs(steady["growth_mb"]) < 20
    assert len(leak["curve"]) == 10 and leak["curve"][-1][0] == 50


def test_rss_is_measured() -> None:
    assert 10 < harness.rss_mb() <= harness.peak_rss_mb() + 1


def test_fullsize_pruned_config_matches_the_demo_parameter_ratio() -> None:
    from mfssd_deploy.bench.fullsize_models import _params, fullsize_config, pruned_config_like, pruned_widths_like
    from mfssd_deploy.checkpoint import read_checkpoint
    from mfssd_deploy.config import BASE_WIDTHS, ModelConfig
    from mfssd_deploy.demo_assets import demo_model, pruned_demo_model

    u, p = (ModelConfig.from_dict(read_checkpoint(m)["config"]) for m in (demo_model(), pruned_demo_model()))
    target = _params(p) / _params(u)
    cfg = pruned_config_like(u, p, multiple=8)
    ratio = _params(cfg) / _params(fullsize_config())
    assert ratio == pytest.approx(target, abs=0.005)
    base = BASE_WIDTHS["mfssd_bn"]
    assert all(w % 8 == 0 and 8 <= w <= base[k] for k, w in cfg.widths.items())
    # scale 1, no rounding: each layer keeps the demo's fraction of its channels
    w1 = pruned_widths_like(u.widths, p.widths)
    for k in base:
        assert w1[k] == round(base[k] * p.widths[k] / u.widths[k])
    assert cfg.num_classes == 21 and cfg.input_size == 300


def test_child_memory_is_its_own_not_the_parents(artifacts: dict) -> None:  # type: ignore[type-arg]
    """ru_maxrss survives fork + exec: a child of a big process must still report its own peak."""
    from mfssd_deploy.bench.memory import peak_memory
    from mfssd_deploy.bench.suite import detector_spec

    ballast = np.ones(600 * 2**20 // 8)  # 600 MiB resident in this process
    spec = detector_spec(artifacts["int8"], "test", "int8-e2e", "trained", "cpu", 2)
    mem = peak_memory(spec, sorted(artifacts["imgs"].iterdir()), [1, 2])
    assert mem is not None and not mem["torch_loaded"]  # an end2end ONNX runs on the lean runtime
    assert 20 < mem["baseline_mb"] < mem["peak_rss_mb"] < 500 < harness.peak_rss_mb()
    assert ballast.sum() > 0
    assert mem["gpu_mb"] is None  # a CPU configuration


class FakeLibcuda:
    """The driver calls `_gpu_free_bytes` makes, writing through the byref arguments like libcuda does."""

    def __init__(self, free: int, fail: str | None = None) -> None:
        self.free, self.fail, self.calls = free, fail, []  # type: ignore[var-annotated]

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        def call(*args):  # type: ignore[no-untyped-def]
            self.calls.append(name)
            if name == self.fail:
                return 100  # CUDA_ERROR_NO_DEVICE
            if name == "cuMemGetInfo_v2":
                args[0]._obj.value, args[1]._obj.value = self.free, 8 * 2**30
            return 0

        return call


def test_gpu_memory_is_read_from_the_driver_in_the_primary_context(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    from mfssd_deploy.bench import memory

    fake = FakeLibcuda(free=3 * 2**30)
    monkeypatch.setattr(ctypes, "CDLL", lambda name: fake if name == "libcuda.so.1" else None)
    assert memory._gpu_free_bytes() == 3 * 2**30
    assert fake.calls == ["cuInit", "cuDeviceGet", "cuDevicePrimaryCtxRetain", "cuCtxSetCurrent", "cuCtxSynchronize",
                          "cuMemGetInfo_v2"]  # fmt: skip
    no_gpu = FakeLibcuda(free=1, fail="cuInit")
    monkeypatch.setattr(ctypes, "CDLL", lambda name: no_gpu)
    assert memory._gpu_free_bytes() is None and no_gpu.calls == ["cuInit"]

    def no_driver(name: str) -> None:
        raise OSError("libcuda.so.1: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_driver)
    assert memory._gpu_free_bytes() is None


def test_memory_cell_shows_gpu_memory_when_measured() -> None:
    from mfssd_deploy.bench import report

    assert report._memory({"memory_mb": 303.4, "gpu_memory_mb": 511.6}) == "303 + 512 GPU"
    assert report._memory({"memory_mb": 303.4, "gpu_memory_mb": None}) == "303"


def test_bench_sessions_do_not_spin(artifacts: dict) -> None:  # type: ignore[type-arg]
    """Interleaved configurations: a spinning ONNX Runtime pool would steal the cores from the next one."""
    from mfssd_deploy import Detector
    from mfssd_deploy.bench.suite import build_runner, detector_spec

    key = "session.intra_op.allow_spinning"
    r = build_runner(detector_spec(artifacts["int8"], "t", "int8-e2e", "trained", "cpu", 2), with_facts=False)
    assert r.detector.backend.session.get_session_options().get_session_config_entry(key) == "0"
    alone = Detector(artifacts["int8"])  # a model that has the cores to itself keeps ONNX Runtime's default
    assert alone.backend.session.get_session_options().get_session_config_entry(key) == "1"
