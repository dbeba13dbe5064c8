"""Quickstart: load a model, detect on the bundled sample images, print and draw the detections.

python examples/quickstart.py [--model M.pt|M.onnx|M.engine] [--out runs/quickstart] [--conf 0.3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2

from mfssd_deploy import Detector
from mfssd_deploy.demo_assets import sample_images
from mfssd_deploy.runtime.inputs import read_image


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="a .pt, .onnx or .engine file (default: the bundled demo checkpoint)")
    ap.add_argument("--out", default="runs/quickstart", help="folder for the annotated images")
    ap.add_argument("--conf", type=float, default=0.3, help="score threshold (default 0.3)")
    args = ap.parse_args(argv)

    det = Detector(args.model, conf=args.conf)  # the model file carries its classes, input size and NMS
    print(det)
    paths = sample_images()
    results = det([str(p) for p in paths])  # one batched call; boxes come back in each image's pixels
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path, r in zip(paths, results, strict=True):
        print(f"{path.name}: {len(r)} objects")
        for name, score, box in zip(r.names, r.scores, r.boxes, strict=True):
            x1, y1, x2, y2 = (round(float(v)) for v in box)
            print(f"  {name:<9s} {score:.2f}  ({x1}, {y1}) - ({x2}, {y2})")
        cv2.imwrite(str(out / path.name), r.draw(read_image(path)))  # the Detector's reader: same pixels
    det([str(p) for p in paths])  # again: the first call also loads libraries (torchvision's NMS) once
    t = det.last_timing
    print(f"annotated images in {out}/; {len(paths)} images, second call: pre {t['pre']:.1f} ms, "
          f"infer {t['infer']:.1f} ms, post {t['post']:.1f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    from mfssd_deploy.cli import run_cli  # bad input: one line, exit code 2

    raise SystemExit(run_cli("quickstart.py", main))
