"""Peak memory of one configuration, measured alone in a fresh process.

In the benchmark process models come and go, and freed memory is reused, so resident-set deltas
there say little. A child process that imports what the configuration needs, loads it and runs it
once per batch size reports its peak RSS: what a deployment running that artifact would see.

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
    """{"peak_rss_mb", "baseline_mb", "torch_loaded"} of a child running `spec`, or None if it failed (logged)."""
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
    from mfssd_deploy.inputs import load_images

    images, _ = load_images(args.images)
    # the libraries the configuration needs count in the baseline; the model and its buffers above it
    if spec["kind"] == "peer" or spec["path"].endswith((".pt", ".engine")):
        import torch  # noqa: F401
    else:
        import onnxruntime  # noqa: F401
    from mfssd_deploy.bench.suite import build_runner

    baseline = peak_rss_mb()
    runner = build_runner(spec, with_facts=False)
    for b in (int(v) for v in args.batch.split(",")):
        runner.run(batch_of(images, b))
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "baseline_mb": baseline, "torch_loaded": "torch" in sys.modules}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
