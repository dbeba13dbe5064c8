"""mfssd-import: an SSD checkpoint trained with another code base, as this project's own checkpoint.

The result is an ordinary checkpoint (config, class names, provenance: the source, its sha256, the
options), so every other command runs it unchanged: mfssd-eval, mfssd-export (INT8 included),
mfssd-detect (--tile too), mfssd-bench, mfssd-serve. The geometry of the source (priors, input
normalisation, box decoding) travels in the config. docs/importing.md lists each source's quirks.
"""

from __future__ import annotations

import argparse
import sys

from mfssd_deploy.cli import HelpFormatter, run_cli


def build_parser() -> argparse.ArgumentParser:
    from mfssd_deploy.importers import SOURCES

    ap = argparse.ArgumentParser(prog="mfssd-import", description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("src", help="the checkpoint: a state_dict, or a training checkpoint holding one under 'model'")
    ap.add_argument("--from", dest="source", choices=list(SOURCES),
                    help="the code base it was trained with (default: found from its keys)")  # fmt: skip
    ap.add_argument("--classes", help="class names: 'voc', 'coco' (torchvision's 91-entry list, its N/A "
                    "placeholders named N/A-12 ...) or a text file, one name per line; the count must match the "
                    "head (default: class1, class2, ...)")  # fmt: skip
    ap.add_argument("--upsample-align-corners", choices=["auto", "true", "false"], default="auto",
                    help="FSSD (pytorchssd): the fusion's bilinear upsampling; true is what the PyTorch 0.2-0.4 the "
                         "FSSD authors trained with did, false what later PyTorch does; the weights cannot tell "
                         "(auto: true for pytorchssd)")  # fmt: skip
    ap.add_argument("--out", required=True, help="the checkpoint to write (a new file)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mfssd_deploy.errors import require

    require("torch", "torch", "mfssd-import")
    from mfssd_deploy.importers import import_checkpoint

    prov = import_checkpoint(args.src, args.out, args.source, args.classes, args.upsample_align_corners)
    print(f"imported {args.src} ({prov['from']}, sha256 {prov['sha256'][:12]}) -> {args.out}")
    return 0


def entry() -> None:
    sys.exit(run_cli("mfssd-import", main))


if __name__ == "__main__":
    entry()
