"""Detections for a folder of images, batched through det.stream, as a COCO results file.

    python examples/folder_to_json.py FOLDER --out detections.json [--annotations ANN.json] [--model M]
    mfssd-eval --detections detections.json --data DATA        # scores it, when FOLDER is DATA's split

With --annotations (the dataset's COCO JSON, e.g. DATA/annotations/val.json) the image ids are the
dataset's and each class is written under the dataset's category id of the same name (never by
position), so mfssd-eval can score the file. Without it, images are numbered 1..N in file name order
and categories 1..C in the model's class order.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mfssd_deploy import Detector
from mfssd_deploy.classes import label_map
from mfssd_deploy.fileio import write_json


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", help="folder of images (or a glob such as 'imgs/*.jpg')")
    ap.add_argument("--out", default="detections.json", help="COCO results file to write")
    ap.add_argument("--annotations", help="the dataset's COCO JSON: use its image and category ids")
    ap.add_argument("--model", help=".pt, .onnx or .engine (default: the bundled demo checkpoint)")
    ap.add_argument("--batch", type=int, default=8, help="images per inference batch (default 8)")
    ap.add_argument("--conf", type=float, help="score threshold (default: the model's, 0.01, right for mAP)")
    args = ap.parse_args(argv)

    det = Detector(args.model, conf=args.conf, batch_size=args.batch)
    ids: dict[str, int] = {}
    cat_ids = list(range(1, len(det.class_names) + 1))
    if args.annotations:
        gt = json.loads(Path(args.annotations).read_text())
        ids = {im["file_name"]: im["id"] for im in gt["images"]}
        by_name = {c["name"]: c["id"] for c in gt["categories"]}
        label_map(det.class_names, list(by_name), "the model", str(args.annotations))  # same names, any order
        cat_ids = [by_name[n] for n in det.class_names]
    results, skipped, n = [], 0, 0
    for frame in det.stream(args.folder, batch=args.batch):  # decoding overlaps inference
        if frame.result is None:
            print(f"skipped {frame.source}: {frame.error}", file=sys.stderr)
            skipped += 1
            continue
        name = Path(frame.source).name
        if ids and name not in ids:
            print(f"skipped {frame.source}: not in {args.annotations}", file=sys.stderr)
            skipped += 1
            continue
        n += 1
        image_id = ids[name] if ids else n
        r = frame.result
        for (x1, y1, x2, y2), score, label in zip(r.boxes.tolist(), r.scores.tolist(), r.labels.tolist(), strict=True):
            results.append({"image_id": image_id, "category_id": cat_ids[label],
                            "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                            "score": round(score, 5)})  # fmt: skip
    write_json(args.out, results)
    print(f"{len(results)} detections on {n} images -> {args.out}" + (f" ({skipped} unreadable)" if skipped else ""))
    return 1 if skipped else 0


if __name__ == "__main__":
    from mfssd_deploy.cli import run_cli  # bad input: one line, exit code 2

    raise SystemExit(run_cli("folder_to_json.py", main))
