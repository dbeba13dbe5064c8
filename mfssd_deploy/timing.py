"""Wall-time of repeated calls: the one timing loop of the bench, the export's snapshot and the demo."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


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
