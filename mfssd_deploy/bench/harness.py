"""The timing protocol: every configuration on the same images, interleaved (A B A B), medians.

Machines are shared and noisy; a ratio measured in one interleaved run holds where absolute times
drift. Each configuration is loaded and warmed up at every batch size first (its resident-memory
growth is recorded then), and the timed calls of all configurations alternate round by round.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mfssd_deploy.bench.rows import BenchRow
from mfssd_deploy.bench.stats import latency_stats

RunFn = Callable[[list[np.ndarray]], "dict[str, float] | None"]
Timings = tuple[list[float], list[dict[str, float]]]  # seconds per timed call, stage times (ms) per call


def rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB.

    Linux: VmHWM of /proc/self/status, the high-water mark of this process image. getrusage's
    ru_maxrss survives fork + exec, so a child started by a big process would report its parent's peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


@dataclass
class Runner:
    """One benchmarked configuration: a call on a list of images, returning its stage times (ms) or None."""

    facts: BenchRow  # model, backend, precision, layout, group, weights, params, gflops, size_mb, ...
    run: RunFn
    detector: Any = None  # set for our own artifacts (accuracy is measured through it)
    extra: dict[str, Any] = field(default_factory=dict)


def batch_of(images: Sequence[np.ndarray], batch: int) -> list[np.ndarray]:
    """The first `batch` images, cycling when there are fewer: the same input for every configuration."""
    return [images[i % len(images)] for i in range(batch)]


def load_and_warm(make: Callable[[], Runner], images: Sequence[np.ndarray], batches: Sequence[int]) -> Runner:
    """Build a runner and call it once per batch size (first calls allocate and pick kernels)."""
    runner = make()
    for b in batches:
        runner.run(batch_of(images, b))
    return runner


def interleaved(runners: Sequence[Runner], chunk: list[np.ndarray], *, warmup: int = 2, iters: int | None = None,
                seconds: float | None = 2.0, min_iters: int = 3,
                progress: Callable[[str], None] | None = None) -> list[Timings]:  # fmt: skip
    """Per runner: wall time of each timed call and its stage times, calls alternating round by round.

    With `iters`, every runner makes that many timed calls. With `seconds`, each runner gets about
    that much timed work (at least `min_iters` calls): its call count comes from its warm-up speed,
    and a round gives each runner its share, so slow and fast configurations stay interleaved.
    """
    est = []
    for r in runners:
        t = 0.0
        for _ in range(max(1, warmup)):
            t0 = time.perf_counter()
            r.run(chunk)
            t = time.perf_counter() - t0
        est.append(max(t, 1e-6))
    if iters is not None:
        counts = [iters] * len(runners)
    else:
        budget = 2.0 if seconds is None else seconds
        counts = [max(min_iters, int(budget / t)) for t in est]
    rounds = min(counts)
    per_round = [max(1, math.ceil(c / rounds)) for c in counts]
    out: list[Timings] = [([], []) for _ in runners]
    for k in range(rounds):
        if progress:
            progress(f"round {k + 1}/{rounds}")
        for r, n, (times, stages) in zip(runners, per_round, out, strict=True):
            for _ in range(n):
                t0 = time.perf_counter()
                st = r.run(chunk)
                times.append(time.perf_counter() - t0)
                if st:
                    stages.append(dict(st))
    return out


def make_row(runner: Runner, batch: int, times: list[float], stages: list[dict[str, float]],
             peak_gflops: float | None) -> BenchRow:  # fmt: skip
    """One bench JSON row (docs/architecture.md, the bench JSON contract) with the roofline fraction."""
    row: BenchRow = {**runner.facts, "batch": batch}
    row.update(latency_stats(times, batch))  # type: ignore[typeddict-item]  # iters, images_per_s, latency_ms
    row["stages_ms"] = (
        {k: float(np.median([s.get(k, 0.0) for s in stages])) for k in ("pre", "infer", "post")} if stages else None
    )
    mem = runner.facts.get("memory")
    row["memory_mb"] = mem["peak_rss_mb"] if mem else None
    row["gpu_memory_mb"] = mem.get("gpu_mb") if mem else None
    gflops = row.get("gflops")
    if gflops:
        row["achieved_gflops_per_s"] = gflops * row["images_per_s"]
        row["fraction_of_peak"] = row["achieved_gflops_per_s"] / peak_gflops if peak_gflops else None
    return row


def soak(runner: Runner, chunk: list[np.ndarray], n: int, samples: int = 10) -> dict[str, Any]:
    """Run `n` calls and record resident memory along the way: growth means a leak."""
    runner.run(chunk)
    start = rss_mb()
    marks = {max(1, round(n * (i + 1) / samples)) for i in range(samples)}
    curve: list[tuple[int, float]] = []
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        runner.run(chunk)
        if i in marks:
            curve.append((i, rss_mb()))
    end = curve[-1][1] if curve else start
    # growth over the second half excludes allocator warm-up (arenas settle in the first calls)
    half = [m for i, m in curve if i >= n // 2] or [end]
    return {"iterations": n, "seconds": time.perf_counter() - t0, "rss_start_mb": start, "rss_end_mb": end,
            "growth_mb": end - start, "growth_second_half_mb": end - half[0], "curve": curve}  # fmt: skip
