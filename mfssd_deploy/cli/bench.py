"""mfssd-bench: speed and accuracy of every artifact, side by side with the peers, in one run.

--fps benchmarks the bundled demo models (trained: accuracy with --val) and the full-size 300x300
MFSSD-BN, unpruned and pruned like the demo model (random weights: speed only), as PyTorch eager,
FP32 raw / end2end and INT8 end2end ONNX (s8: TensorRT-compatible; u8: x86 CPUs) in ONNX Runtime and,
where installed, OpenVINO (f32, and bf16 for FP32 files: --runtimes); on a
GPU also PyTorch CUDA, ONNX Runtime's TensorRT/CUDA providers and, with TensorRT installed, INT8 and
FP16 TensorRT engines of every group (built once per GPU and TensorRT version; --no-engines skips
them); engines of your own with --models engines/x.engine.
Peers in the same run, on each device: torchvision ssd300_vgg16 end to end, and eager MFSSD-BN with
the reference per-class greedy NMS loop; on the CPU with OpenVINO, OpenVINO's defaults on our own
full-size pruned INT8 files, and the unpruned full-size model quantized by NNCF and run in OpenVINO.

Calls alternate between configurations round by round (A B A B) on the same images; figures are
medians. The machine's FP32 and INT8 peaks are measured in the same run (large matmuls; INT8 rows
are read against the INT8 peak). Artifacts are
exported once into --cache. The targets (docs/benchmarking.md) are printed as PASS/FAIL lines (UNCHECKED
when the run lacks what a target needs), after the INT8/FP32 and pruned/unpruned speed ratios.

--soak N runs N calls per configuration and batch size and reports resident-memory growth.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mfssd_deploy.cli import run_cli
from mfssd_deploy.cli.options import (
    DataArgs,
    add_deprecated_alias,
    add_device_option,
    add_engine_options,
    add_json_option,
)

if TYPE_CHECKING:
    from mfssd_deploy.bench.run import BenchRequest


def _ints(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {text!r}")
    return vals


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    from mfssd_deploy.bench.suite import ALL_FORMATS, CPU_RUNTIMES, GROUPS, OPT_IN_GROUPS

    ap = argparse.ArgumentParser(
        prog="mfssd-bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--fps", action="store_true", help="the speed table (images/s, latency, stages, roofline)")
    ap.add_argument("--soak", type=int, metavar="N",
                    help="run N calls per configuration and batch size and report memory growth")  # fmt: skip
    ap.add_argument("--models", type=_names, default=None,
                    help=f"comma-separated groups ({', '.join(GROUPS)}; {', '.join(OPT_IN_GROUPS)}: torchvision's "
                         "ssd300_vgg16 against the import of the same weights, named only) and/or .pt/.onnx/.engine "
                         "files (default: all four groups; --soak: demo)")  # fmt: skip
    ap.add_argument("--formats", type=_names, default=list(ALL_FORMATS),
                    help=f"artifact kinds per group (default: {','.join(ALL_FORMATS)}; "
                         "the trt-* engines only on a GPU with TensorRT)")  # fmt: skip
    sizes = ap.add_argument("--batch-sizes", type=_ints, default=[1, 8], metavar="N,N,...",
                            help="batch sizes, comma-separated (default 1,8)")  # fmt: skip
    add_deprecated_alias(ap, "--batch", sizes)  # its name before mfssd-export's --batch-profile got its own
    ap.add_argument("--iters", type=int, help="timed calls per configuration and batch (default: --seconds)")
    ap.add_argument("--seconds", type=float, default=2.0,
                    help="timed work per configuration and batch, at least 3 calls (default 2)")  # fmt: skip
    ap.add_argument("--warmup", type=int, default=2, help="untimed calls before timing (default 2)")
    ap.add_argument("--no-peers", dest="peers", action="store_false", help="skip the peers")
    ap.add_argument("--val", nargs="?", const="synth", metavar="DIR",
                    help="also measure mAP@0.5 / APs of the trained artifacts: on DIR (COCO/VOC/synthetic layout), "
                         "or without DIR on the demo's fresh synthetic validation set")  # fmt: skip
    ap.add_argument("--val-images", type=int, default=200, help="validation images (default 200)")
    ap.add_argument("--images", help="folder of timing images (default: the bundled samples, cycled to fill a batch)")
    add_device_option(ap, "auto: CPU rows, plus GPU rows when a CUDA GPU is visible")
    ap.add_argument("--no-memory", dest="memory", action="store_false",
                    help="skip measuring each configuration's peak memory in a fresh process")  # fmt: skip
    ap.add_argument("--no-engines", dest="engines", action="store_false",
                    help="on a GPU with TensorRT: do not build the groups' engines (minutes each, once per GPU "
                         "and TensorRT version)")  # fmt: skip
    ap.add_argument("--cuda-graphs", action="store_true",
                    help="TensorRT engines: replay CUDA graphs (like trtexec --useCudaGraph)")  # fmt: skip
    ap.add_argument("--runtimes", type=_names, default=None, metavar="R,R,...",
                    help=f"CPU runtimes each ONNX artifact runs in, through our Detector ({', '.join(CPU_RUNTIMES)}; "
                         "openvino-bf16: OpenVINO's bf16 precision hint, FP32 files only; default: all installed). "
                         "With openvino, the OpenVINO peers run too: bare OpenVINO, nothing configured, on our "
                         "full-size pruned INT8 files, and OpenVINO + NNCF INT8 on the unpruned full-size model "
                         "(needs [bench])")  # fmt: skip
    ap.add_argument("--tile", type=int, metavar="N",
                    help="tiled inference in every row of ours (tiles of N pixels plus the whole frame, merged; "
                         "see mfssd-detect --tile): images/s are frames per second. Without --images the frames "
                         "are large synthetic ones (1920x1080 and 1280x720); the peers are left out")  # fmt: skip
    ap.add_argument("--overlap", type=float, metavar="F", help="with --tile: overlap of neighbouring tiles "
                    "(default 0.2)")  # fmt: skip
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads for ONNX Runtime, OpenVINO and torch (0: all cores)")  # fmt: skip
    ap.add_argument("--cache", help="where exported artifacts are kept (default ~/.cache/mfssd-deploy/bench)")
    add_json_option(ap, "the results (the bench JSON contract, docs/architecture.md)")
    ap.add_argument("--csv", help="write one CSV line per row to this file")
    ap.add_argument("--markdown", help="also write the Markdown report to this file")
    ap.add_argument("--plot", help="write a PNG plot (images/s per configuration and batch; stage times)")
    ap.add_argument("-q", "--quiet", "--no-progress", action="store_true", help="no progress messages")
    # the builder settings of the groups' engines: their precisions come from --formats, their profile
    # from --batch-sizes, and they live in --cache
    t = ap.add_argument_group("TensorRT engines of the model groups (on a GPU with TensorRT)")
    add_engine_options(t, ("workspace", "timing_cache"),
                       timing_cache_default="one per GPU, TensorRT version and profile in --cache")  # fmt: skip
    DataArgs.add(ap)  # the --val folder's layout and class list
    return ap


def bench_request(args: argparse.Namespace) -> BenchRequest:
    """The BenchRequest the arguments describe."""
    from mfssd_deploy.bench.run import BenchRequest
    from mfssd_deploy.cli.options import engine_options

    trt = engine_options(args)
    return BenchRequest(
        fps=args.fps,
        soak=args.soak,
        models=tuple(args.models) if args.models is not None else None,
        formats=tuple(args.formats),
        batch_sizes=tuple(args.batch_sizes),
        iters=args.iters,
        seconds=args.seconds,
        warmup=args.warmup,
        peers=args.peers,
        val=args.val,
        val_images=args.val_images,
        val_format=args.format,
        val_classes=args.classes,
        images=args.images,
        device=args.device,
        memory=args.memory,
        engines=args.engines,
        cuda_graphs=args.cuda_graphs,
        threads=args.threads,
        runtimes=tuple(args.runtimes) if args.runtimes is not None else None,
        tile=args.tile,
        overlap=args.overlap,
        cache=Path(args.cache) if args.cache else None,
        workspace_gb=trt.workspace_gb,
        timing_cache=trt.timing_cache,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s", stream=sys.stderr)
    from mfssd_deploy.bench.run import format_text, run_bench, validate, write_outputs
    from mfssd_deploy.fileio import write_json

    req = bench_request(args)
    validate(req)
    if args.plot:  # before the run, not after it
        from mfssd_deploy.errors import require

        require("matplotlib", "train", "--plot")
    if req.soak is not None:
        soak = run_bench(req, on_soak_row=_soak_printer())
        if args.json:
            write_json(args.json, soak)
        return 0
    result = run_bench(req)
    text = format_text(result)
    print(text)
    write_outputs(result, text, json=args.json, csv=args.csv, markdown=args.markdown, plot=args.plot)
    return 0


def _soak_printer() -> Callable[[dict[str, Any]], None]:
    """Prints the soak table row by row as the rows are measured (a soak runs minutes), header first."""
    from mfssd_deploy.bench.run import SOAK_HEADER, soak_line

    started = False

    def print_row(row: dict[str, Any]) -> None:
        nonlocal started
        if not started:
            print(SOAK_HEADER)
            started = True
        print(soak_line(row))

    return print_row


def entry() -> None:
    sys.exit(run_cli("mfssd-bench", main))


if __name__ == "__main__":
    entry()
