"""Calibrate INT8 on a folder of images, export, and compare mAP and speed with FP32.

    python examples/int8_calibrate.py [--model M.pt] [--calib DIR] [--val DATA] [--out export/int8_example]

Writes the FP32, INT8 (symmetric Q/DQ: ONNX Runtime and TensorRT) and CPU-tuned INT8 (uint8
activations: ONNX Runtime on x86 only) end2end ONNX files, then prints each one's mAP@0.5 on the
validation set and its images/s on this machine at batch 8 (same images, calls interleaved).
Without --calib/--val, a small synthetic set is generated first (the demo model's domain).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="checkpoint (default: the bundled demo model)")
    ap.add_argument("--calib", help="folder of calibration images (default: a generated synthetic set)")
    ap.add_argument("--calib-num", type=int, default=100, help="calibration images (default 100)")
    ap.add_argument("--val", help="dataset for mAP (COCO/VOC/synthetic layout; default: a generated one)")
    ap.add_argument("--val-images", type=int, default=100, help="validation images (default 100)")
    ap.add_argument("--out", default="export/int8_example", help="output folder")
    ap.add_argument("--iters", type=int, default=5, help="timed batches per model (default 5)")
    args = ap.parse_args(argv)

    from mfssd_deploy.bench.harness import batch_of, interleaved
    from mfssd_deploy.bench.suite import build_runner, detector_spec
    from mfssd_deploy.data.synth import generate
    from mfssd_deploy.demo_assets import demo_model, sample_images
    from mfssd_deploy.exporters.pipeline import ExportRequest, run_export
    from mfssd_deploy.runtime.inputs import read_image

    out = Path(args.out)
    data = out / "data"
    if not (args.calib and args.val) and not (data / "annotations" / "val.json").is_file():
        print(f"generating {args.calib_num} calibration + {args.val_images} validation synthetic images in {data}")
        generate(data, args.calib_num, args.val_images, seed=1, show_progress=False)
    report = run_export(ExportRequest(
        model=Path(args.model) if args.model else demo_model(), out_dir=out, layouts=("end2end",), int8=True,
        int8_cpu=True, calib=Path(args.calib) if args.calib else data / "train", calib_num=args.calib_num,
        val=Path(args.val) if args.val else data, val_images=args.val_images, parity_images=sample_images(),
        time_runs=0))  # fmt: skip
    acc = {Path(k).name: v for k, v in report["accuracy"]["results"].items()}

    images = [read_image(p) for p in sample_images()]
    specs = [
        detector_spec(Path(a["path"]), "example", a["precision"], "trained", "cpu", 8) for a in report["artifacts"]
    ]
    runners = [build_runner(s, with_facts=False) for s in specs]
    names = [Path(a["path"]).name for a in report["artifacts"]]
    timed = interleaved(runners, batch_of(images, 8), warmup=1, iters=args.iters, seconds=None)
    fp32_map = fp32_ips = None
    print("\n| model | precision | MB | mAP@0.5 | APs | images/s (batch 8) |\n|---|---|---:|---:|---:|---:|")
    for a, name, (times, _) in zip(report["artifacts"], names, timed, strict=True):
        ips = 8 / float(np.median(times))
        m, aps = acc[name]["voc07_map"], acc[name]["coco"]["APs"]
        if a["precision"] == "fp32":
            fp32_map, fp32_ips = m, ips
        print(f"| {name} | {a['precision']} | {a['size_mb']:.2f} | {m:.4f} | {aps:.4f} | {ips:.1f} |")
    for a, name, (times, _) in zip(report["artifacts"], names, timed, strict=True):
        if a["precision"] != "fp32" and fp32_map is not None and fp32_ips:
            m = acc[name]["voc07_map"]
            print(f"{a['precision']}: mAP@0.5 {100 * (m - fp32_map):+.2f} points vs FP32, "
                  f"{8 / float(np.median(times)) / fp32_ips:.2f}x its speed")  # fmt: skip
    return 0


if __name__ == "__main__":
    from mfssd_deploy.cli import run_cli  # bad input: one line, exit code 2

    raise SystemExit(run_cli("int8_calibrate.py", main))
