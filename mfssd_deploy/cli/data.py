"""mfssd-data: make datasets. `mfssd-data synth` writes the synthetic small-object set; `--large` its
large-frame variant (surveillance / drone-like 1920x1080 and 1280x720 frames) for tiled and native-resolution
inference."""

from __future__ import annotations

import argparse
import sys

from mfssd_deploy.cli import HelpFormatter, run_cli


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mfssd-data", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser(
        "synth",
        help="synthetic small-object dataset: JPEGs + COCO JSON",
        description="Write OUT/{train,val}/*.jpg and OUT/annotations/{train,val}.json (COCO format), "
        "deterministic for a seed; prints the COCO size histogram. --large: frames like surveillance or drone "
        "footage instead (1920x1080 and 1280x720, heavy clutter, 40-80 objects each, 70% of them small, "
        "18-31 px, the rest 32-200 px: the sizes the demo model knows); `--large --val 24 --seed 1` is the "
        "tiling benchmark's set (benchmarks/tiling, data.synth.generate_large).",
        formatter_class=HelpFormatter,
    )
    s.add_argument("--out", required=True, help="output folder: new or empty (one that holds anything is refused)")
    s.add_argument("--large", action="store_true",
                   help="large cluttered frames (1920x1080, 1280x720) with many small objects, like surveillance or "
                        "drone footage; defaults become --train 0 --val 24")  # fmt: skip
    s.add_argument("--train", type=int, help="training images (default 2000; with --large 0)")
    s.add_argument("--val", type=int, help="validation images (default 300; with --large 24)")
    s.add_argument("--seed", type=int, default=0, help="random seed (the demo model: 0 for training, 1 held out)")
    s.add_argument("--format", choices=["coco", "yolo"], default="coco",
                   help="layout to write: coco (annotations/SPLIT.json + SPLIT/) or yolo (data.yaml + images/SPLIT/ + "
                        "labels/SPLIT/): the same images and boxes either way")  # fmt: skip
    s.add_argument("--json", help="write the size histogram as JSON")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    c = sub.add_parser(
        "convert",
        help="write a dataset (COCO, VOC, YOLO or VisDrone) in another layout",
        description="Read every split (train, val, test) of SRC, in whatever layout it is (or --format), and write "
        "it to OUT in the --to layout: lossless where the target can hold it; what it cannot (ignore and crowd "
        "regions in YOLO, crowd regions in VOC) is counted and said. Images are copied; SRC is never written to; "
        "OUT must be new or empty, and an error leaves nothing behind.",
        formatter_class=HelpFormatter,
    )
    c.add_argument("src", help="the dataset to read")
    c.add_argument("--to", required=True, choices=["coco", "yolo", "voc"], help="layout to write")
    c.add_argument("--out", required=True, help="output folder (new or empty)")
    c.add_argument("--format", help="SRC's layout when the folder is ambiguous (coco, voc, yolo, visdrone)")
    c.add_argument("--json", help="write the conversion report as JSON")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "convert":
        return _convert(args)
    from mfssd_deploy.data.synth import LARGE_FRAMES, SynthSpec, format_histogram, generate
    from mfssd_deploy.errors import MfssdError
    from mfssd_deploy.fileio import refuse_nonempty, write_json

    train = args.train if args.train is not None else (0 if args.large else 2000)
    val = args.val if args.val is not None else (24 if args.large else 300)
    if train < 0 or val < 0 or train + val == 0:
        raise MfssdError("--train and --val must be >= 0 and not both 0")
    refuse_nonempty(args.out, "--out", "give a new or empty folder (a dataset is never written over)")
    spec = LARGE_FRAMES if args.large else SynthSpec()
    if args.format == "yolo":  # the same images and boxes, then written in the YOLO layout
        import tempfile

        from mfssd_deploy.data.convert import convert

        with tempfile.TemporaryDirectory(prefix="mfssd-synth-") as tmp:
            hists = generate(tmp, train, val, args.seed, spec, show_progress=not args.no_progress)
            convert(tmp, "yolo", args.out)
    else:
        hists = generate(args.out, train, val, args.seed, spec, show_progress=not args.no_progress)
    print(format_histogram(hists))
    if args.json:
        write_json(args.json, hists)
    return 0


def _convert(args: argparse.Namespace) -> int:
    from mfssd_deploy.data.convert import convert
    from mfssd_deploy.fileio import write_json

    report = convert(args.src, args.to, args.out, args.format)
    counts = ", ".join(f"{k} {v}" for k, v in report["splits"].items())
    print(f"{args.src} -> {report['out']} ({args.to}): {counts} images")
    for what, n in report["dropped"].items():
        if n:
            print(f"note: {n} {what} dropped: the {args.to} layout cannot hold them")
    for what, n in report["changed"].items():
        if n:
            print(f"note: {n} {what}")
    if report["skipped_in_source"]:
        print(f"note: {report['skipped_in_source']} malformed annotations of the source were skipped")
    if args.json:
        write_json(args.json, report)
    return 0


def entry() -> None:
    sys.exit(run_cli("mfssd-data", main))


if __name__ == "__main__":
    entry()
