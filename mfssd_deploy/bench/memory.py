"""Peak memory of one configuration, measured alone in a fresh process.

In the benchmark process models come and go, and freed memory is reused, so resident-set deltas
there say little. A child process that imports what the configuration needs, loads it and runs it
once per batch size reports its peak RSS: what a deployment running that artifact would see.
On a GPU it also reports the device memory the configuration holds after its runs, above the
CUDA context (free memory before loading minus free memory after: engines, weights, activation
buffers and allocator pools, whoever allocated them: torch, ONNX Runtime or TensorRT).

    python -m mfssd_deploy.bench.memory '<spec json>' --batch 1,8 --images a.jpg b.jpg
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def peak_memory(spec: dict[str, Any], images: Sequence[Path], batches: Sequence[int],
                timeout: float = 600) -> dict[str, Any] | None:  # fmt: skip
    """{"peak_rss_mb", "baseline_mb", "torch_loaded", "gpu_mb"} of a child running `spec`, or None if it
    failed (logged). gpu_mb is None for CPU configurations."""
    import logging

    cmd = [sys.executable, "-m", "mfssd_deploy.bench.memory", json.dumps(spec),
           "--batch", ",".join(map(str, batches)), "--images", *map(str, images)]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        logging.getLogger(__name__).warning("memory of %s: timed out", spec.get("path") or spec.get("peer"))
        return None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        logging.getLogger(__name__).warning("memory of %s failed: %s", spec.get("path") or spec.get("peer"), last)
        return None
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mfssd_deploy.bench.memory", description=__doc__)
    ap.add_argument("spec", help="configuration as JSON (mfssd_deploy.bench.suite.Spec)")
    ap.add_argument("--batch", default="1", help="batch sizes, comma-separated")
    ap.add_argument("--images", nargs="+", required=True)
    args = ap.parse_args(argv)
    spec = json.loads(args.spec)
    from mfssd_deploy.bench.harness import batch_of, peak_rss_mb
    from mfssd_deploy.runtime.inputs import load_images

    images, _ = load_images(args.images)
    # the libraries the configuration needs count in the baseline; the model and its buffers above it
    if spec["kind"] == "peer" or spec["path"].endswith((".pt", ".engine")):
        import torch  # noqa: F401
    else:
        import onnxruntime  # noqa: F401
    from mfssd_deploy.bench.suite import build_runner

    free_before = _gpu_free_bytes() if spec.get("device") == "cuda" else None  # creates the CUDA context
    baseline = peak_rss_mb()
    runner = build_runner(spec, with_facts=False)
    for b in (int(v) for v in args.batch.split(",")):
        runner.run(batch_of(images, b))
    gpu_mb = None
    if free_before is not None:
        free_after = _gpu_free_bytes()
        gpu_mb = (free_before - free_after) / 2**20 if free_after is not None else None
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "baseline_mb": baseline, "torch_loaded": "torch" in sys.modules,
                      "gpu_mb": gpu_mb}))  # fmt: skip
    return 0


def _gpu_free_bytes() -> int | None:
    """Free device memory as the driver sees it (cuMemGetInfo in the primary context, the one torch,
    ONNX Runtime and TensorRT share), through libcuda directly: importing torch here would add its
    ~300 MB to the RSS of configurations that never load it. None without a driver or GPU."""
    import ctypes

    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    dev, ctx = ctypes.c_int(), ctypes.c_void_p()
    free, total = ctypes.c_size_t(), ctypes.c_size_t()
    steps = (
        lambda: cuda.cuInit(0),
        lambda: cuda.cuDeviceGet(ctypes.byref(dev), 0),
        lambda: cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev),
        lambda: cuda.cuCtxSetCurrent(ctx),
        lambda: cuda.cuCtxSynchronize(),
        lambda: cuda.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total)),
    )
    return int(free.value) if all(step() == 0 for step in steps) else None  # CUDA_SUCCESS is 0


if __name__ == "__main__":
    sys.exit(main())
