"""mfssd-export: checkpoint -> ONNX (raw / end2end; FP32, INT8 Q/DQ, FP16) -> TensorRT engines.

Every ONNX artifact is checked (onnx.checker), simplified, tagged with its `mfssd` metadata and
compared with PyTorch on real images before it is written; an FP32 artifact that disagrees is not
written and the command fails. Engines are built on the GPU that will run them: they are specific
to the GPU and the TensorRT version. Where TensorRT is missing the ONNX files are still written.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from mfssd_deploy.artifacts import onnx_kind
from mfssd_deploy.cli import run_cli
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.exporters.limits import AGREEMENT_SCORE, MIN_AGREEMENT

log = logging.getLogger("mfssd_deploy")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="mfssd-export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", help="checkpoint (default: the bundled demo model)")
    ap.add_argument("--onnx", action="store_true", help="write ONNX files (always done: engines are built from them)")
    ap.add_argument("--out-dir", default="export", help="ONNX output folder (default: export/)")
    ap.add_argument("--name", help="file name stem (default: the checkpoint's)")
    lay = ap.add_mutually_exclusive_group()
    lay.add_argument("--end2end", action="store_true", help="only the end2end layout (NMS in the graph)")
    lay.add_argument("--raw", action="store_true", help="only the raw layout (loc, scores)")
    ap.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17: TensorRT 8.5/8.6 parse up to 17)")
    ap.add_argument("--conf", type=float, help="score threshold stored in the end2end graph (default 0.01)")
    ap.add_argument("--iou", type=float, help="NMS IoU threshold (default 0.45)")
    ap.add_argument("--max-det", type=int, help="detections per image (default 200)")
    ap.add_argument("--pre-nms-topk", type=int, help="candidates per image entering NMS (default 2000, < 3840)")
    q = ap.add_argument_group("INT8 (Q/DQ through onnxruntime.quantization)")
    q.add_argument("--int8", action="store_true", help="also write the INT8 Q/DQ model(s)")
    q.add_argument("--int8-cpu", action="store_true",
                   help="with --int8, also the CPU-tuned INT8 model (.int8u8: uint8 activations, ONNX Runtime's fast "
                        "path on x86, ~1.5x the speed there; TensorRT cannot load it)")  # fmt: skip
    q.add_argument("--calib", help="folder of calibration images (same pre-processing as inference)")
    q.add_argument("--calib-num", type=int, default=200, help="calibration images to use (default 200)")
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
    ap.add_argument("--fp16", action="store_true", help="also write the FP16 ONNX (TensorRT 11 strongly typed)")
    ap.add_argument("--no-fp32", action="store_true", help="skip the FP32 artifacts (INT8/FP16 only)")
    ap.add_argument("--parity-images", help="folder of images for the parity check (default: bundled samples)")
    t = ap.add_argument_group("TensorRT")
    t.add_argument("--trt", action="store_true", help="build TensorRT engines (on the GPU that will run them)")
    t.add_argument(
        "--precision",
        default="fp16",
        choices=["fp32", "fp16", "int8"],
        help="engine precision (default fp16; on GTX 10xx Pascal use int8: FP16 is not faster there)",
    )
    t.add_argument("--batch", default="1,8,16", help="optimization profile MIN,OPT,MAX of the batch axis")
    t.add_argument("--workspace", type=float, default=2.0, help="builder workspace in GiB (default 2)")
    t.add_argument("--timing-cache", help="timing cache file, read and updated (default: ENGINES_DIR/timing.cache)")
    t.add_argument("--dla-core", type=int, help="build for this DLA core (Jetson Xavier/Orin), GPU fallback on")
    t.add_argument("--engines-dir", default="engines", help="engine output folder (default: engines/)")
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
    ap.add_argument("--json", help="write the export report to this file")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from mfssd_deploy.bundled import demo_model, sample_images
    from mfssd_deploy.exporters.pipeline import ExportRequest, format_report, run_export
    from mfssd_deploy.fileio import write_json
    from mfssd_deploy.inputs import list_images

    model = Path(args.model) if args.model else demo_model()
    parity = list_images(args.parity_images) if args.parity_images else sample_images()
    if not parity:
        raise MfssdError("no parity images: the bundled samples are missing; pass --parity-images DIR")
    if args.int8_cpu and not args.int8:
        raise MfssdError("--int8-cpu is a variant of --int8: add --int8 --calib DIR")
    if args.trt and args.precision == "int8" and not args.int8:
        raise MfssdError("--trt --precision int8 builds from the Q/DQ model: add --int8 --calib DIR")
    batch = _parse_batch(args.batch) if args.trt or args.triton else None
    req = ExportRequest(
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
        int8=args.int8,
        int8_cpu=args.int8_cpu,
        calib=Path(args.calib) if args.calib else None,
        calib_num=args.calib_num,
        calib_method=args.calib_method,
        recalibrate=args.recalibrate,
        min_agreement=args.min_agreement,
        keep_fp32=tuple(s for s in args.keep_fp32.split(",") if s),
        # TensorRT 11 builds FP16 from an FP16 ONNX (8.x/10.x from the FP32 one): write it too.
        fp16=args.fp16 or (args.trt and args.precision == "fp16"),
        val=Path(args.val) if args.val else None,
        val_split=args.val_split,
        val_images=args.val_images,
        parity_images=parity,
    )
    if not (req.fp32 or req.int8 or req.fp16):
        raise MfssdError("--no-fp32 leaves nothing to export: add --int8 or --fp16")
    report = run_export(req)
    print(format_report(report))
    code = 0
    try:
        if args.check_trt:
            report["trt_check"] = check_artifacts(report["artifacts"], args.check_trt)
            print(format_check(report["trt_check"]))
            if any(
                v != "ok" and not v.startswith("skipped") for row in report["trt_check"].values() for v in row.values()
            ):
                code = 1
        if args.trt:
            assert batch is not None
            report["engines"] = build_engines(report, args, batch)
        if args.triton:
            assert batch is not None
            report["triton"] = write_triton(report, args, batch)
            print(f"Triton model repository: {args.triton} ({', '.join(report['triton'])}); "
                  f"serve with: tritonserver --model-repository={Path(args.triton).resolve()}")  # fmt: skip
    finally:
        if args.json:
            write_json(args.json, report)
    return code


def write_triton(report: dict[str, Any], args: argparse.Namespace, batch: tuple[int, int, int]) -> list[str]:
    """One Triton model per exported ONNX file (and per built engine); returns the model names."""
    from mfssd_deploy.exporters.triton import TritonOptions, add_engine, add_onnx

    opts = TritonOptions(
        kind=args.triton_device,
        instances=args.triton_instances,
        max_batch=batch[2],
        preferred=tuple(sorted({batch[1], batch[2]})),
        max_queue_delay_us=args.triton_max_queue_delay_us,
        trt_accelerator=args.triton_trt,
    )
    repo = Path(args.triton)
    names = []
    for a in report["artifacts"]:
        if not onnx_kind(a["precision"], a["layout"]).gpu and opts.kind == "gpu":
            continue  # CPU-only artifact
        names.append(add_onnx(repo, Path(a["path"]), opts).name)
    for e in report.get("engines", []):
        if opts.kind != "gpu":
            log.warning("%s not added to the Triton repository: engines need --triton-device gpu", e["path"])
            continue
        names.append(add_engine(repo, Path(e["path"]), opts).name)
    return names


def _parse_batch(text: str) -> tuple[int, int, int]:
    try:
        lo, opt, hi = (int(v) for v in text.split(","))
    except ValueError:
        raise MfssdError(f"--batch {text!r}: give MIN,OPT,MAX, e.g. 1,8,16") from None
    if not 1 <= lo <= opt <= hi:
        raise MfssdError(f"--batch {text}: need 1 <= MIN <= OPT <= MAX")
    return lo, opt, hi


def check_artifacts(artifacts: list[dict[str, Any]], version: str) -> dict[str, dict[str, str]]:
    """For each artifact and TensorRT line: "ok" or the first problem (and how many more)."""
    import onnx

    from mfssd_deploy.exporters.trt_lint import lint, tables, version_line

    versions = list(tables()) if version == "all" else [version_line(version)]
    out: dict[str, dict[str, str]] = {}
    for a in artifacts:
        if "tensorrt" not in onnx_kind(a["precision"], a["layout"]).runtimes:
            out[Path(a["path"]).name] = {
                v: "skipped: CPU-only INT8 (uint8 activations), not for TensorRT" for v in versions
            }
            continue
        model = onnx.load(a["path"])
        row = {}
        for v in versions:
            problems = lint(model, v)
            row[v] = "ok" if not problems else f"{problems[0]} (+{len(problems) - 1} more)"
        out[Path(a["path"]).name] = row
    return out


def format_check(check: dict[str, dict[str, str]]) -> str:
    return "\n".join(
        f"TensorRT {v} parser check, {name}: {verdict}" for name, row in check.items() for v, verdict in row.items()
    )


def build_engines(report: dict[str, Any], args: argparse.Namespace, batch: tuple[int, int, int]) -> list[dict]:
    """One engine per exported layout at --precision; the ONNX files are already written."""
    from mfssd_deploy.engine_meta import import_tensorrt
    from mfssd_deploy.exporters.tensorrt_build import BuildRequest, build_engine

    import_tensorrt()  # after the ONNX export: a missing TensorRT still leaves the ONNX files
    from mfssd_deploy.artifacts import ENGINE_SOURCE, engine_name

    source_key = {onnx_precision: engine for engine, onnx_precision in ENGINE_SOURCE.items()}
    engines_dir = Path(args.engines_dir)
    cache = Path(args.timing_cache) if args.timing_cache else engines_dir / "timing.cache"
    built = []
    for layout in sorted({a["layout"] for a in report["artifacts"]}):
        onnx_files = {
            source_key[a["precision"]]: Path(a["path"])
            for a in report["artifacts"]
            if a["layout"] == layout and a["precision"] in source_key  # not the CPU-only u8 INT8 variant
        }
        out = engines_dir / engine_name(report["name"], layout, args.precision)
        request = BuildRequest(
            onnx=onnx_files,
            out=out,
            precision=args.precision,
            batch=batch,
            workspace_gb=args.workspace,
            timing_cache=cache,
            dla_core=args.dla_core,
        )
        meta = build_engine(request)
        print(
            f"engine {out} ({args.precision}, TensorRT {meta['tensorrt_version']}, {meta['gpu_name']}, "
            f"built in {meta['build_seconds']:.0f} s)"
        )
        built.append({"path": str(out), **{k: meta[k] for k in ("precision", "tensorrt_version", "gpu_name")}})
    return built


def entry() -> None:
    sys.exit(run_cli("mfssd-export", main))


if __name__ == "__main__":
    entry()
