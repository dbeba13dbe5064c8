"""Resident memory of the Python side of the lean TensorRT runtime (no torch), measured in a fresh process.

    python tools/lean_trt_memory.py [--batch 8] [--size 300]

What it can measure without a GPU: the interpreter with the lean runtime's imports (numpy, OpenCV, the
Detector), NVIDIA's CUDA bindings (the real cuda.bindings.runtime module: importing it needs no GPU), one
pre-processed batch, and host arrays the size of the backend's pinned buffers for that batch (input and the
four end2end outputs). What it cannot: TensorRT's own libraries, the CUDA context and the engine's device
memory (weights and activations); on a Jetson those come out of the same DRAM (docs/jetson.md).
"""

from __future__ import annotations

import argparse
import importlib.abc
import json
import resource
import sys


class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.split(".")[0] in ("torch", "torchvision", "onnxruntime"):
            raise ImportError(f"{name} is not part of the lean TensorRT runtime")
        return None


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kb / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=300)
    ap.add_argument("--max-det", type=int, default=200)
    args = ap.parse_args()
    sys.meta_path.insert(0, _NoTorch())
    stages = {"python": rss_mb()}
    import numpy as np

    from mfssd_deploy.runtime.detector import Detector  # noqa: F401  (numpy, OpenCV, the runtime)
    from mfssd_deploy.runtime.preprocess import preprocess_batch

    stages["+ lean runtime (numpy, OpenCV, Detector)"] = rss_mb()
    from cuda.bindings import runtime  # noqa: F401

    from mfssd_deploy.runtime.backends import tensorrt_lean  # noqa: F401

    stages["+ cuda-bindings runtime, TensorRT backend modules"] = rss_mb()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (480, 640, 3), np.uint8) for _ in range(args.batch)]
    x = preprocess_batch(frames, args.size, (104.0, 117.0, 123.0), (1.0, 1.0, 1.0), "bgr")
    b, k = args.batch, args.max_det
    host = [np.empty_like(x), np.empty((b, 1), np.int32), np.empty((b, k, 4), np.float32),
            np.empty((b, k), np.float32), np.empty((b, k), np.int32)]  # fmt: skip
    for h in host:
        h.fill(0)  # touched, as the copies touch pinned memory
    stages[f"+ batch {b} pre-processed + pinned-size host buffers ({sum(h.nbytes for h in host) / 2**20:.1f} MB)"] = (
        rss_mb()
    )
    stages["peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"torch_loaded": "torch" in sys.modules, "rss_mb": stages}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
