"""`make demo`: the paper's Table I analog for the four variants, and one timed MFSSD-BN forward."""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from mfssd_deploy.cli import run_cli


def model_table(num_classes: int = 21) -> list[dict[str, object]]:
    from mfssd_deploy.complexity import measure
    from mfssd_deploy.config import make_config
    from mfssd_deploy.models import build_model

    rows = []
    for variant, label in (
        ("ssd300", "SSD300"),
        ("fssd", "FSSD"),
        ("mfssd", "MFSSD"),
        ("mfssd_bn", "MFSSD-BN"),
    ):
        c = measure(build_model(variant, num_classes))
        priors = make_config(variant, num_classes).priors.num_priors
        rows.append({"model": label, "params": c.params, "size_mb": c.size_mb, "gmacs": c.gmacs, "priors": priors})
    return rows


def print_table(rows: list[dict[str, object]]) -> None:
    print("| model | parameters (21 classes) | size MB (FP32) | G multiply-adds | priors |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['params']:,} | {r['size_mb']:.1f} | {r['gmacs']:.2f} | {r['priors']:,} |")


def time_forward(repeats: int = 3) -> list[float]:
    import torch

    from mfssd_deploy.models import build_model

    model = build_model("mfssd_bn").eval()
    x = torch.randn(1, 3, 300, 300)
    times = []
    with torch.inference_mode():
        model(x)  # warm-up: first call allocates and picks kernels
        for _ in range(repeats):
            t = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t) * 1000)
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mfssd-demo", description=__doc__)
    ap.add_argument("--repeats", type=int, default=3, help="timed MFSSD-BN forward passes (default 3)")
    args = ap.parse_args(argv)
    print("== MFSSD model family at 300x300 (the paper's Table I analog)")
    print_table(model_table())
    times = time_forward(args.repeats)
    import torch

    print(
        f"\nMFSSD-BN forward, batch 1, PyTorch eager FP32 on CPU ({torch.get_num_threads()} threads): "
        f"median {statistics.median(times):.0f} ms over {len(times)} runs after 1 warm-up"
    )
    return 0


def entry() -> None:
    sys.exit(run_cli("mfssd-demo", main))


if __name__ == "__main__":
    entry()
