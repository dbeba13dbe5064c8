"""mfssd-export: checkpoint -> ONNX (raw / end2end; FP32, INT8 Q/DQ, FP16) -> TensorRT engines.

Every ONNX artifact is checked (onnx.checker), simplified, tagged with its `mfssd` metadata and
compared with PyTorch on real images before it is written; an FP32 artifact that disagrees is not
written and the command fails.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mfssd_deploy.cli import run_cli
from mfssd_deploy.errors import MfssdError


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="mfssd-export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", help="checkpoint (default: the bundled demo model)")
    ap.add_argument(
        "--onnx", action="store_true", help="write ONNX files (the default when nothing else is asked)"
    )
    ap.add_argument("--out-dir", default="export", help="ONNX output folder (default: export/)")
    ap.add_argument("--name", help="file name stem (default: the checkpoint's)")
    lay = ap.add_mutually_exclusive_group()
    lay.add_argument("--end2end", action="store_true", help="only the end2end layout (NMS in the graph)")
    lay.add_argument("--raw", action="store_true", help="only the raw layout (loc, scores)")
    ap.add_argument(
        "--opset", type=int, default=17, help="ONNX opset (default 17: TensorRT 8.5/8.6 parse up to 17)"
    )
    ap.add_argument("--conf", type=float, help="score threshold stored in the end2end graph (default 0.01)")
    ap.add_argument("--iou", type=float, help="NMS IoU threshold (default 0.45)")
    ap.add_argument("--max-det", type=int, help="detections per image (default 200)")
    ap.add_argument(
        "--pre-nms-topk", type=int, help="candidates per image entering NMS (default 2000, < 3840)"
    )
    q = ap.add_argument_group("INT8 (Q/DQ through onnxruntime.quantization)")
    q.add_argument("--int8", action="store_true", help="also write the INT8 Q/DQ model(s)")
    q.add_argument("--calib", help="folder of calibration images (same pre-processing as inference)")
    q.add_argument("--calib-num", type=int, default=200, help="calibration images to use (default 200)")
    q.add_argument("--calib-method", default="minmax", choices=["minmax", "entropy", "percentile"])
    q.add_argument(
        "--keep-fp32", default="", help="comma-separated node names kept in FP32; aliases first-conv, heads"
    )
    q.add_argument("--val", help="dataset to report FP32 vs INT8 mAP on (same evaluation code as mfssd-eval)")
    q.add_argument("--val-split", default="val")
    q.add_argument("--val-images", type=int, help="evaluate on the first N images only")
    ap.add_argument(
        "--fp16", action="store_true", help="also write the FP16 ONNX (for TensorRT 11 strongly typed)"
    )
    ap.add_argument("--no-fp32", action="store_true", help="skip the FP32 artifacts (INT8/FP16 only)")
    ap.add_argument(
        "--parity-images", help="folder of images for the parity check (default: bundled samples)"
    )
    ap.add_argument("--json", help="write the export report to this file")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from mfssd_deploy.bundled import demo_model, sample_images
    from mfssd_deploy.exporters.pipeline import ExportRequest, format_report, run_export
    from mfssd_deploy.exporters.quantize import list_images
    from mfssd_deploy.fileio import write_json

    model = Path(args.model) if args.model else demo_model()
    parity = list_images(args.parity_images) if args.parity_images else sample_images()
    if not parity:
        raise MfssdError("no parity images: the bundled samples are missing; pass --parity-images DIR")
    layouts = ("end2end",) if args.end2end else ("raw",) if args.raw else ("raw", "end2end")
    req = ExportRequest(
        model=model,
        out_dir=Path(args.out_dir),
        name=args.name,
        opset=args.opset,
        layouts=layouts,
        conf=args.conf,
        iou=args.iou,
        max_det=args.max_det,
        pre_nms_topk=args.pre_nms_topk,
        fp32=not args.no_fp32,
        int8=args.int8,
        calib=Path(args.calib) if args.calib else None,
        calib_num=args.calib_num,
        calib_method=args.calib_method,
        keep_fp32=tuple(s for s in args.keep_fp32.split(",") if s),
        fp16=args.fp16,
        val=Path(args.val) if args.val else None,
        val_split=args.val_split,
        val_images=args.val_images,
        parity_images=parity,
    )
    if not (req.fp32 or req.int8 or req.fp16):
        raise MfssdError("--no-fp32 leaves nothing to export: add --int8 or --fp16")
    report = run_export(req)
    print(format_report(report))
    if args.json:
        write_json(args.json, report)
    return 0


def entry() -> None:
    sys.exit(run_cli("mfssd-export", main))


if __name__ == "__main__":
    entry()
