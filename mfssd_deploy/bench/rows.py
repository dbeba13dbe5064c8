"""One benchmark row (the ARCHITECTURE.md bench JSON contract) for a Detector on fixed images."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from mfssd_deploy.bench.stats import latency_stats, time_calls
from mfssd_deploy.config import ModelConfig


@lru_cache(maxsize=32)
def _complexity(config_json: str) -> tuple[int, float]:
    import json

    from mfssd_deploy.complexity import measure
    from mfssd_deploy.models import build_from_config

    c = measure(build_from_config(ModelConfig.from_dict(json.loads(config_json))))
    return c.params, c.gflops


def model_facts(cfg: ModelConfig) -> tuple[int, float]:
    """Parameters and GFLOPs (2 x multiply-adds) of the architecture an artifact was exported from."""
    import json

    return _complexity(json.dumps(cfg.to_dict(), sort_keys=True))


def bench_detector(det: Any, images: Sequence[np.ndarray], batch: int, *, warmup: int = 2, iters: int | None = 10,
                   seconds: float | None = None, peak_gflops: float | None = None) -> dict[str, Any]:  # fmt: skip
    """Time end-to-end calls of `det` on the first `batch` images (repeated if fewer) and its stages."""
    chunk = [images[i % len(images)] for i in range(batch)]
    stages: list[dict[str, float]] = []

    def call() -> None:
        det.detect_arrays(chunk)
        stages.append(dict(det.last_timing))

    times = time_calls(call, warmup=warmup, iters=iters, seconds=seconds)
    stages = stages[warmup:]
    params, gflops = model_facts(det.config)
    row: dict[str, Any] = {
        "model": det.path.name, "backend": det.backend.name, "precision": det.backend.meta.get("precision", "fp32"),
        "layout": det.layout, "batch": batch, **latency_stats(times, batch),
        "stages_ms": {k: float(np.median([s[k] for s in stages])) for k in ("pre", "infer", "post")},
        "gflops": gflops, "params": params, "size_mb": os.path.getsize(det.path) / 2**20,
    }  # fmt: skip
    achieved = gflops * row["images_per_s"]
    row["achieved_gflops_per_s"] = achieved
    if peak_gflops:
        row["fraction_of_peak"] = achieved / peak_gflops
    return row
