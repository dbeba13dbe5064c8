"""mfssd-data: make datasets. `mfssd-data synth` writes the synthetic small-object set."""

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
        "deterministic for a seed; prints the COCO size histogram.",
        formatter_class=HelpFormatter,
    )
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--train", type=int, default=2000, help="training images")
    s.add_argument("--val", type=int, default=300, help="validation images")
    s.add_argument("--seed", type=int, default=0, help="random seed (the demo model: 0 for training, 1 held out)")
    s.add_argument("--json", help="write the size histogram as JSON")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mfssd_deploy.data.synth import format_histogram, generate
    from mfssd_deploy.errors import MfssdError
    from mfssd_deploy.fileio import write_json

    if args.train < 0 or args.val < 0 or args.train + args.val == 0:
        raise MfssdError("--train and --val must be >= 0 and not both 0")
    hists = generate(args.out, args.train, args.val, args.seed, show_progress=not args.no_progress)
    print(format_histogram(hists))
    if args.json:
        write_json(args.json, hists)
    return 0


def entry() -> None:
    sys.exit(run_cli("mfssd-data", main))


if __name__ == "__main__":
    entry()
