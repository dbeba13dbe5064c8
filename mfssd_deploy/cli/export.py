"""mfssd-export: checkpoint -> ONNX (raw / end2end; FP32, INT8 Q/DQ, FP16) -> TensorRT engines.

Every ONNX artifact is checked (onnx.checker), simplified, tagged with its `mfssd` metadata and
compared with PyTorch on real images before it is written; an FP32 artifact that disagrees is not
written and the command fails. Engines are built on the GPU that will run them: they are specific
to the GPU and the TensorRT version. Where TensorRT is missing the ONNX files are still written.

--model NAME.int8.end2end.onnx --trt (any ONNX file exported earlier: raw or end2end, FP32, FP16 or INT8 Q/DQ)
builds its engine where it will run, a Jetson or a serving box, with TensorRT's ONNX parser: no checkpoint
and no PyTorch (pip install "mfssd-deploy[trt-lean]"; the same parser check, NAME.LAYOUT.PRECISION.engine
and its .json as a build from the checkpoint).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mfssd_deploy.artifacts import ONNX_PRECISIONS
from mfssd_deploy.cli import run_cli
from mfssd_deploy.cli.options import (
    add_engine_options,
    add_json_option,
    add_model_option,
    checkpoint_path,
    engine_options,
)
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.exporters.limits import AGREEMENT_SCORE, MIN_AGREEMENT

if TYPE_CHECKING:
    from mfssd_deploy.exporters.deploy import EngineOptions, TritonRepoOptions
    from mfssd_deploy.exporters.pipeline import ExportRequest


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="mfssd-export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_model_option(ap)
    ap.add_argument("--onnx", action="store_true", help="write ONNX files (always done: engines are built from them)")
    ap.add_argument("--out-dir", default="export", help="ONNX output folder (default: export/)")
    ap.add_argument("--name", help="file name stem (default: the checkpoint's)")
    lay = ap.add_mutually_exclusive_group()
    lay.add_argument("--end2end", action="store_true", help="only the end2end layout (NMS in the graph)")
    lay.add_argument("--raw", action="store_true", help="only the raw layout (loc, scores)")
    ap.add_argument("--input-size", metavar="WxH",
                    help="export for whole frames of this size, e.g. 1920x1080 (native resolution: a fixed camera "
                         "size; priors, metadata, end2end graph and TensorRT profiles for it; default: the "
                         "checkpoint's 300x300). Files get the size in their name unless --name is given")  # fmt: skip
    ap.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17: TensorRT 8.5/8.6 parse up to 17)")
    ap.add_argument("--conf", type=float, help="score threshold stored in the end2end graph (default 0.01)")
    ap.add_argument("--iou", type=float, help="NMS IoU threshold (default 0.45)")
    ap.add_argument("--max-det", type=int, help="detections per image (default 200)")
    ap.add_argument("--pre-nms-topk", type=int, help="candidates per image entering NMS (default 2000, < 3840)")
    q = ap.add_argument_group("INT8 (Q/DQ through onnxruntime.quantization)")
    for p in ONNX_PRECISIONS.values():  # --int8, --int8-cpu, --fp16: one switch per precision beyond FP32
        if p.help:
            (q if p.calibrated else ap).add_argument(f"--{p.field.replace('_', '-')}", action="store_true", help=p.help)
    q.add_argument("--calib", help="folder of calibration images (same pre-processing as inference)")
    q.add_argument("--calib-num", type=int, default=200, help="calibration images to use (default 200)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    q.add_argument("--calib-method", default="minmax", choices=["minmax", "entropy", "percentile"])
    q.add_argument(
        "--recalibrate",
        action="store_true",
        help="compute the ranges afresh even when NAME.int8.calib.json is valid (a cache is reused only "
        "for the same FP32 graph, calibration files, method and recipe; anything else recalibrates)",
    )
    ap.add_argument("--min-agreement", type=float, default=MIN_AGREEMENT, metavar="F1",
                    help="an INT8/FP16 artifact whose detections (score >= %(agree)s) agree with FP32's on the parity "
                         "images below this F1 is not written and the export fails (default %(default)s; 0: off)"
                         .replace("%(agree)s", str(AGREEMENT_SCORE)))  # fmt: skip
    q.add_argument("--keep-fp32", default="", help="comma-separated node names kept in FP32; aliases first-conv, heads")
    q.add_argument("--val", help="dataset to report FP32 vs INT8 mAP on (same evaluation code as mfssd-eval)")
    q.add_argument("--val-split", default="val")
    q.add_argument("--val-images", type=int, help="evaluate on the first N images only")
    ap.add_argument("--no-fp32", action="store_true", help="skip the FP32 artifacts (INT8/FP16 only)")
    ap.add_argument("--parity-images", help="folder of images for the parity check (default: bundled samples)")
    t = ap.add_argument_group("TensorRT")
    t.add_argument("--trt", action="store_true", help="build TensorRT engines (on the GPU that will run them)")
    add_engine_options(t)  # --precision, --batch-profile, --workspace, --timing-cache, --dla-core, --engines-dir
    t.add_argument(
        "--check-trt",
        nargs="?",
        const="all",
        metavar="VERSION",
        help="check the exported ONNX files against TensorRT VERSION's ONNX parser (8.5, 8.6, 10, 11; no "
        "VERSION: all); exit 1 if any would not parse. --trt runs the same check for the installed version",
    )
    tr = ap.add_argument_group("Triton Inference Server model repository")
    tr.add_argument("--triton", metavar="DIR", help="also write a Triton model repository: one model per exported "
                    "ONNX file (onnxruntime backend) and per engine (tensorrt_plan)")  # fmt: skip
    tr.add_argument("--triton-device", default="gpu", choices=["gpu", "cpu"], help="instance group kind (default gpu)")
    tr.add_argument("--triton-instances", type=int, default=1, help="model instances per device (default 1)")
    tr.add_argument("--triton-max-queue-delay-us", type=int, default=2000,
                    help="dynamic batching: microseconds a request may wait for a batch (default 2000)")  # fmt: skip
    tr.add_argument("--triton-trt", action="store_true",
                    help="ONNX models on GPU: ONNX Runtime's TensorRT accelerator (INT8 for Q/DQ, else FP16)"
                    )  # fmt: skip
    tr.add_argument("--triton-backend", default="onnxruntime", choices=["onnxruntime", "tensorrt", "python"],
                    help="onnxruntime: ONNX files on Triton's onnxruntime backend, engines as tensorrt_plan; "
                    "tensorrt: the engines alone; python: a tensor and an image model per end2end artifact on "
                    "Triton's Python backend (mfssd-serve's models, docs/serving.md)")  # fmt: skip
    add_json_option(ap, "the export report")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    calibrated = [p.field for p in ONNX_PRECISIONS.values() if p.calibrated and getattr(args, p.field)]
    if calibrated and not args.calib:  # before the exporter's imports (seconds), not after them
        flag = f"--{calibrated[0].replace('_', '-')}"
        raise MfssdError(f"{flag} needs calibration images: add --calib DIR (a folder of images like the deployment's)")
    model = checkpoint_path(args)
    if model.suffix.lower() == ".onnx":  # before the exporter's imports: this route needs neither torch nor them
        return engines_from_onnx(args, model)
    from mfssd_deploy.demo_assets import sample_images
    from mfssd_deploy.exporters.pipeline import check_request, format_report, run_export
    from mfssd_deploy.runtime.inputs import list_images

    parity = list_images(args.parity_images) if args.parity_images else sample_images()
    if not parity:
        raise MfssdError("no parity images: the bundled samples are missing; pass --parity-images DIR")
    engines, triton = _deploy_options(args)
    req = check_request(export_request(args, model, parity), engines)
    report = run_export(req)
    print(format_report(report))
    return _deploy(args, report, engines, triton)


def _deploy_options(args: argparse.Namespace) -> tuple[EngineOptions | None, TritonRepoOptions | None]:
    """The engine and Triton steps the arguments ask for (the batch profile serves Triton too)."""
    trt = engine_options(args) if args.trt or args.triton else None
    engines = trt if args.trt else None
    triton = triton_options(args, trt.batch) if args.triton and trt is not None else None
    return engines, triton


def _deploy(args: argparse.Namespace, report: dict[str, Any], engines: EngineOptions | None,
            triton: TritonRepoOptions | None) -> int:  # fmt: skip
    """The parser check, engines and Triton repository of an export report; the report JSON is written
    even when a step fails. Exit 1 when the parser check fails."""
    from mfssd_deploy.exporters.deploy import check_failed, deploy
    from mfssd_deploy.fileio import write_json

    try:
        deploy(report, check_trt=args.check_trt, engines=engines, triton=triton, echo=print)
    finally:
        if args.json:
            write_json(args.json, report)
    return 1 if check_failed(report.get("trt_check")) else 0


# Options that shape an export from the checkpoint: with an .onnx --model (already exported) they would be
# silently ignored, so they are refused instead.
EXPORT_ONLY = ("onnx", "out_dir", "end2end", "raw", "input_size", "opset", "conf", "iou", "max_det", "pre_nms_topk",
               *(p.field for p in ONNX_PRECISIONS.values() if p.help),
               "calib", "calib_num", "calib_method", "recalibrate", "min_agreement", "keep_fp32",
               "val", "val_split", "val_images", "no_fp32", "parity_images")  # fmt: skip


def engines_from_onnx(args: argparse.Namespace, model: Path) -> int:
    """mfssd-export --trt --model NAME.int8.end2end.onnx: the engine of an ONNX file exported earlier, built where
    it will run (a Jetson, a serving box) with TensorRT's ONNX parser: no checkpoint and no torch; the same
    parser check, engine, metadata and Triton steps as an export from the checkpoint (exporters.deploy)."""
    from mfssd_deploy.exporters.deploy import check_tensorrt_source, onnx_report

    defaults = build_parser()
    given = [f"--{d.replace('_', '-')}" for d in EXPORT_ONLY if getattr(args, d, None) != defaults.get_default(d)]
    if given:
        raise MfssdError(
            f"{', '.join(given)}: {model.name} is already exported, and these options shape an export from the .pt "
            "checkpoint: drop them to build its engine (--trt; engines go to --engines-dir), or pass the checkpoint"
        )
    if not (args.trt or args.check_trt or args.triton):
        raise MfssdError(f"{model.name} is already exported: add --trt to build its TensorRT engine here (or "
                         "--check-trt, --triton), or pass the .pt checkpoint to export it again")  # fmt: skip
    engines, triton = _deploy_options(args)
    report = onnx_report(model, args.name)
    if engines is not None:
        check_tensorrt_source(report)
    return _deploy(args, report, engines, triton)


def export_request(args: argparse.Namespace, model: Path, parity: list[Path]) -> ExportRequest:
    """The ExportRequest the arguments describe (checked by the library: exporters.pipeline.check_request)."""
    from mfssd_deploy.config import parse_input_size
    from mfssd_deploy.exporters.pipeline import ExportRequest

    return ExportRequest(
        model=model,
        out_dir=Path(args.out_dir),
        name=args.name,
        opset=args.opset,
        layouts=("end2end",) if args.end2end else ("raw",) if args.raw else ("raw", "end2end"),
        conf=args.conf,
        iou=args.iou,
        max_det=args.max_det,
        pre_nms_topk=args.pre_nms_topk,
        fp32=not args.no_fp32,
        **{p.field: getattr(args, p.field) for p in ONNX_PRECISIONS.values() if p.help},  # check_request adds
        # fp16 for FP16 engines (TensorRT 11 builds them from the FP16 file)
        calib=Path(args.calib) if args.calib else None,
        calib_num=args.calib_num,
        calib_method=args.calib_method,
        progress=not args.no_progress,
        recalibrate=args.recalibrate,
        min_agreement=args.min_agreement,
        keep_fp32=tuple(s for s in args.keep_fp32.split(",") if s),
        val=Path(args.val) if args.val else None,
        val_split=args.val_split,
        val_images=args.val_images,
        parity_images=parity,
        input_size=parse_input_size(args.input_size) if args.input_size else None,
    )


def triton_options(args: argparse.Namespace, batch: tuple[int, int, int]) -> TritonRepoOptions:
    from mfssd_deploy.exporters.deploy import TritonRepoOptions

    return TritonRepoOptions(
        repo=args.triton,
        backend=args.triton_backend,
        device=args.triton_device,
        instances=args.triton_instances,
        max_queue_delay_us=args.triton_max_queue_delay_us,
        trt_accelerator=args.triton_trt,
        batch=batch,
    )


def entry() -> None:
    sys.exit(run_cli("mfssd-export", main))


if __name__ == "__main__":
    entry()
