"""mfssd-train: train any variant and width on COCO-format, VOC or synthetic data (CPU, GPU, torchrun)."""

from __future__ import annotations

import argparse
import logging
import sys

from mfssd_deploy.cli import HelpFormatter, run_cli
from mfssd_deploy.cli.options import DataArgs
from mfssd_deploy.config import VARIANT_TABLE
from mfssd_deploy.errors import MfssdError


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="mfssd-train",
        description="Train an SSD/FSSD/MFSSD detector. Multi-GPU: torchrun --nproc_per_node N "
        "$(which mfssd-train) ... (DistributedDataParallel; --batch is the global batch).",
        formatter_class=HelpFormatter,
    )
    ap.add_argument(
        "--data", required=True, help="dataset root: annotations/SPLIT.json (COCO format), COCO 2017, or VOC"
    )
    ap.add_argument("--out", help="folder for last.pt, best.pt and log.jsonl; one that already holds a run is "
                    "refused (default: runs/train, or the first free runs/train2, runs/train3, ...)")  # fmt: skip
    ap.add_argument("--variant", default="mfssd_bn", choices=tuple(VARIANT_TABLE),
                    help="architecture; ssd300_11620 = SSD300 with the FSSD prior set (the paper's Table II SSD), "
                         "mfssd_bn_111 = MFSSD-BN with 1:1:1 fusion (256 channels in branch A)")  # fmt: skip
    ap.add_argument("--width", type=float, default=1.0, help="channel width multiplier (0.25 = the demo model)")
    ap.add_argument("--train-split", default="train", help="split to train on")
    ap.add_argument("--val-split", default="val", help="split evaluated during training ('' to skip)")
    ap.add_argument("--epochs", type=int, default=24, help="passes over the training split")
    ap.add_argument("--batch", type=int, default=16, help="global batch size")
    ap.add_argument("--lr", type=float, help="base LR (default: the paper's 0.4 at batch 256, scaled)")
    ap.add_argument("--weight-decay", type=float, default=5e-4, help="SGD weight decay")
    ap.add_argument(
        "--warmup-epochs",
        type=float,
        help="linear warmup length (default: the paper's 5 of 300 epochs, scaled to --epochs)",
    )
    ap.add_argument(
        "--sparsity", type=float, default=0.0, help="L1 strength on BN gammas (network slimming), e.g. 1e-4"
    )
    ap.add_argument("--clip-grad-norm", type=float,
                    help="clip the L2 norm of all gradients together to this value (off by default; "
                         "mmdetection's RetinaNet recipe uses 35)")  # fmt: skip
    ap.add_argument("--zoom-out", type=float, default=4.0, help="max zoom-out canvas factor (1 disables)")
    ap.add_argument("--workers", type=int, default=2, help="data-loading processes")
    ap.add_argument(
        "--amp",
        default="auto",
        choices=["auto", "off", "bf16", "fp16"],
        help="mixed precision: auto = fp16 on CUDA, bf16 on CPUs with AVX-512 BF16",
    )
    ap.add_argument("--no-channels-last", action="store_true", help="keep NCHW (channels_last is on for CPU)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--resume", help="continue a run from its last.pt (model, optimizer, step)")
    ap.add_argument("--finetune", help="start from a checkpoint's structure and weights (e.g. a pruned model); "
                    "its classes must be the data's, by name, in any order")  # fmt: skip
    ap.add_argument("--new-head", action="store_true",
                    help="with --finetune: keep the backbone, fusion and box head, and start a fresh class head "
                         "for the data's classes (other names or another number of classes)")  # fmt: skip
    ap.add_argument("--init-vgg", help="torchvision vgg16/vgg16_bn ImageNet state_dict file for the backbone")
    ap.add_argument("--eval-every", type=int, default=1, help="evaluate every N epochs")
    ap.add_argument("--eval-images", type=int, help="evaluate on the first N val images only")
    ap.add_argument("--max-steps", type=int, help="stop after N optimizer steps (smoke runs)")
    ap.add_argument("--seed", type=int, default=0, help="random seed")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    ap.add_argument("--json", help="write the run summary (history, best mAP) to this file")
    DataArgs.add(ap)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from mfssd_deploy.errors import require

    # what the run needs later, checked now: an epoch of training must not end in a missing module
    torch = require("torch", "train", "mfssd-train")
    if args.val_split:
        require("pycocotools.cocoeval", "train", "the COCO AP of mfssd-train's evaluations (--val-split '' skips them)")
        if args.sparsity > 0:
            require("matplotlib", "train", "the |gamma| histograms of --sparsity")

    from mfssd_deploy.fileio import write_json
    from mfssd_deploy.train.loop import TrainOptions, train

    if args.threads:
        torch.set_num_threads(args.threads)
    extra = {}
    if args.warmup_epochs is not None:
        extra["warmup"] = args.warmup_epochs / max(args.epochs, 1)
    opt = TrainOptions(
        data=args.data,
        out=args.out,
        variant=args.variant,
        width=args.width,
        train_split=args.train_split,
        val_split=args.val_split or None,
        epochs=args.epochs,
        batch=args.batch,
        lr=args.lr,
        weight_decay=args.weight_decay,
        sparsity=args.sparsity,
        clip_grad_norm=args.clip_grad_norm,
        zoom_out=args.zoom_out,
        workers=args.workers,
        amp=args.amp,
        channels_last=False if args.no_channels_last else None,
        device=args.device,
        resume=args.resume,
        finetune=args.finetune,
        new_head=args.new_head,
        classes=args.classes,
        format=args.format,
        init_vgg=args.init_vgg,
        eval_every=args.eval_every,
        eval_images=args.eval_images,
        max_steps=args.max_steps,
        seed=args.seed,
        progress=not args.no_progress,
        **extra,
    )
    if args.clip_grad_norm is not None and not args.clip_grad_norm > 0:
        raise MfssdError(f"--clip-grad-norm {args.clip_grad_norm}: give a positive norm (e.g. 35)")
    summary = train(opt)
    best = f"best val mAP@0.5 {summary['best_map']:.4f}" if opt.val_split else "no validation (--val-split '')"
    print(f"done in {summary['train_time_s'] / 60:.1f} min; {best}; checkpoints in {summary['out']}")
    if args.json:
        write_json(args.json, summary)
    return 0


def entry() -> None:
    sys.exit(run_cli("mfssd-train", main))


if __name__ == "__main__":
    entry()
