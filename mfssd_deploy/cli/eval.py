"""mfssd-eval: VOC07 mAP (11-point and all-point) and COCO AP/APs/APm/APl of a model on a dataset.

--tile N scores tiled (sliced) inference with the same metrics: each image is cut into overlapping tiles
at native resolution, plus the whole frame resized, and the boxes are merged (see "tiled inference").
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mfssd_deploy.cli import HelpFormatter, run_cli
from mfssd_deploy.cli.options import DataArgs, runtime_rule
from mfssd_deploy.errors import MfssdError

if TYPE_CHECKING:
    from mfssd_deploy.evaluation.result import EvalResult


def format_result(res: EvalResult) -> str:
    """The whole result: the per-class table, both VOC mAPs, every COCO figure the result holds (a metric added
    to evaluation.coco shows here by itself), the AI-TOD buckets."""
    lines = ["| class | AP@0.5 (VOC07) | AP@0.5 (all-point) | GT |", "|---|---:|---:|---:|"]
    for name, v in res["per_class"].items():
        ap07 = "n/a" if math.isnan(v["ap07"]) else f"{v['ap07']:.4f}"
        ap = "n/a" if math.isnan(v["ap"]) else f"{v['ap']:.4f}"
        lines.append(f"| {name} | {ap07} | {ap} | {v['n_gt']} |")
    lines.append(
        f"\nmAP@0.5 VOC07 11-point: {res['voc07_map']:.4f}   all-point: {res['voc_map_all_point']:.4f}"
        f"   ({res['images']} images)"
    )
    if "coco" in res:
        from mfssd_deploy.evaluation.coco import AITOD_BUCKETS

        c = res["coco"]
        lines.append("COCO: " + "  ".join(f"{k} {v:.4f}" for k, v in c.items() if k not in AITOD_BUCKETS))

        if all(k in c for k in AITOD_BUCKETS):
            lines.append("AI-TOD buckets (sqrt area): " + "  ".join(
                f"{k} ({lo:g}-{hi:g} px) {c[k]:.4f}" if hi < 1e5 else f"{k} (> {lo:g} px) {c[k]:.4f}"
                for k, (lo, hi) in AITOD_BUCKETS.items()))  # fmt: skip
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mfssd-eval", description=__doc__, formatter_class=HelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--model", help=".pt, .onnx or .engine (default: the bundled demo model; without torch its "
                     f"end2end ONNX export); {runtime_rule()}")  # fmt: skip
    src.add_argument("--detections", help="score a COCO results file (e.g. from examples/folder_to_json.py) instead")
    ap.add_argument("--data", required=True, help="dataset root (COCO-format annotations/SPLIT.json, COCO 2017, VOC)")
    ap.add_argument("--split", default="val", help="dataset split")
    ap.add_argument("--json", help="write the result (contract: voc07_map, coco, per_class) to this file")
    ap.add_argument("--batch", type=int, help="images (or tiles) per inference call (default: 8; a TensorRT engine: "
                    "the largest batch of its profile)")  # fmt: skip
    ap.add_argument("--max-images", type=int, help="evaluate the first N images only")
    ap.add_argument("--conf", type=float, help="score threshold (default: the model's, 0.01)")
    ap.add_argument("--iou", type=float, help="NMS IoU (default: the model's, 0.45)")
    ap.add_argument("--max-det", "--max-dets", dest="max_det", type=int,
                    help="detections per image, for the model and for COCO's maxDets alike (default: the model's "
                         "200 and COCO's 100; a VisDrone dataset: 500, the benchmark's)")  # fmt: skip
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--no-coco", action="store_true",
                    help="VOC metrics only (without pycocotools COCO AP is skipped anyway, with a note)")  # fmt: skip
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    from mfssd_deploy.cli.detect import add_tiling_arguments

    add_tiling_arguments(ap)
    DataArgs.add(ap)
    return ap


def _want_coco(no_coco: bool) -> bool:
    """COCO AP needs pycocotools (the [train] extra): the lean install reports the VOC metrics and says
    that COCO AP was skipped, before the images are run rather than after."""
    if no_coco:
        return False
    from mfssd_deploy.evaluation.coco import coco_available

    if coco_available():
        return True
    print('note: COCO AP skipped: pycocotools is not installed (pip install "mfssd-deploy[train]"); '
          "--no-coco silences this", file=sys.stderr)  # fmt: skip
    return False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from mfssd_deploy.cli.detect import tiling_from_args
    from mfssd_deploy.data.sources import open_dataset
    from mfssd_deploy.demo_assets import default_model
    from mfssd_deploy.evaluation.runner import detector_predictor, evaluate, load_coco_results, score_detections
    from mfssd_deploy.fileio import write_json
    from mfssd_deploy.runtime.detector import Detector

    tiling_from_args(args, 300)  # bad tiling settings fail before the dataset is read
    if args.detections and args.tile:
        raise MfssdError("--tile applies to --model; --detections scores a results file as it is")
    source = open_dataset(args.data, args.split, args.classes, args.format)
    coco = _want_coco(args.no_coco)
    max_dets = args.max_det
    from mfssd_deploy.data import visdrone

    if max_dets is None and source.class_names == visdrone.CLASSES:
        max_dets = visdrone.MAX_DETS
        print(f"note: VisDrone is scored with up to {max_dets} detections per image (--max-dets N changes it)",
              file=sys.stderr)  # fmt: skip
    if args.detections:
        source = source.require_content("scoring", images=False)
        res = score_detections(source, load_coco_results(args.detections, source), coco=coco, max_dets=max_dets)
        res["detections"] = str(args.detections)
    else:
        model_path = Path(args.model) if args.model else default_model()
        det = Detector(
            model_path, device=args.device, conf=args.conf, iou=args.iou, max_det=max_dets, batch_size=args.batch
        )
        det.tiling = tiling_from_args(args, det.config.input_size)
        res = evaluate(
            detector_predictor(det),
            source,
            class_names=det.class_names,
            batch_size=det.batch_size,
            max_images=args.max_images,
            coco=coco,
            progress=not args.no_progress,
            max_dets=max_dets,
        )
        res["model"] = str(model_path)
        res["tiling"] = det.tiling.to_dict() if det.tiling else None
    if source.skipped:  # both metrics scored the same cleaned ground truth, without these
        res["skipped_annotations"] = len(source.skipped)
        print(f"note: {len(source.skipped)} malformed annotations were skipped", file=sys.stderr)
    print(format_result(res))
    if args.json:
        write_json(args.json, res)
    return 0


def entry() -> None:
    sys.exit(run_cli("mfssd-eval", main))


if __name__ == "__main__":
    entry()
