"""The paper's compression pipeline in one script, on the demo model, with small budgets:

  1. sparse fine-tune (L1 on the BatchNorm scales, network slimming),
  2. prune the channels with the smallest |gamma|, globally,
  3. fine-tune the pruned structure,
  4. export ONNX (FP32 + INT8 end2end) and
  5. benchmark unpruned vs pruned side by side.

    python examples/prune_and_deploy.py [--model M.pt] [--ratio 0.3] [--round-to 8] [--images 256] [--epochs 1]

The defaults finish in minutes on a CPU; they show the mechanics, not the accuracy. The bundled
pruned demo model was made the same way with real budgets (benchmarks/compression/reproduce.sh).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="an MFSSD-BN checkpoint (default: the bundled demo model)")
    ap.add_argument("--ratio", type=float, default=0.3, help="fraction of channels to remove, globally (default 0.3)")
    ap.add_argument(
        "--round-to",
        type=int,
        default=8,
        help="keep a multiple of N channels per layer (default 8: faster kernels; 1: the paper's exact order)",
    )
    ap.add_argument("--sparsity", type=float, default=1e-2, help="L1 weight on |gamma| (default 1e-2)")
    ap.add_argument("--images", type=int, default=256, help="synthetic training images (default 256)")
    ap.add_argument("--epochs", type=int, default=1, help="epochs of sparse training and of fine-tuning (default 1)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--out", default="runs/prune_example", help="work folder")
    args = ap.parse_args(argv)

    from mfssd_deploy.checkpoint import load_model, save_checkpoint
    from mfssd_deploy.cli.bench import main as bench
    from mfssd_deploy.data.synth import generate
    from mfssd_deploy.demo_assets import demo_model, sample_images
    from mfssd_deploy.exporters.pipeline import ExportRequest, run_export
    from mfssd_deploy.fileio import sha256_file
    from mfssd_deploy.prune import prune_model, pruning_record, widths_of
    from mfssd_deploy.train.loop import TrainOptions, train
    from mfssd_deploy.train.sparsity import gamma_summary

    out = Path(args.out)
    source = Path(args.model) if args.model else demo_model()
    data = out / "data"
    if not (data / "annotations" / "val.json").is_file():
        generate(data, args.images, max(32, args.images // 4), seed=2, show_progress=False)
    common = dict(data=str(data), epochs=args.epochs, batch=args.batch, warmup=0.1, zoom_out=1.0, workers=0,
                  eval_every=args.epochs, eval_images=64, progress=False)  # fmt: skip

    print(f"== 1. sparse fine-tune of {source.name}: L1 {args.sparsity} on the BN scales, {args.epochs} epoch(s)")
    sparse = train(TrainOptions(out=str(out / "sparse"), finetune=str(source), sparsity=args.sparsity, lr=0.02,
                                **common))  # type: ignore[arg-type]  # fmt: skip
    sparse_model = load_model(out / "sparse" / "last.pt")
    g = gamma_summary(sparse_model)
    print(f"   val mAP@0.5 {sparse['history'][-1]['val']['voc07_map']:.4f}; median |gamma| {g['median']:.3g}, "
          f"{g['below_1e-2']:.0%} of {int(g['count'])} below 1e-2")  # fmt: skip

    print(
        f"== 2. prune {args.ratio:.0%} of the channels by |gamma| (torch-pruning BNScalePruner, global, "
        f"widths multiples of {args.round_to})"
    )
    result = prune_model(sparse_model, ratio=args.ratio, round_to=args.round_to)
    pruned_path = out / "pruned.pt"
    record = pruning_record(result, sha256_file(out / "sparse" / "last.pt"), widths_of(sparse_model))
    save_checkpoint(pruned_path, result.model, pruning=record)
    print(f"   {result.params_before:,} -> {result.params_after:,} parameters ({1 - result.kept:.1%} fewer)")

    print(f"== 3. fine-tune the pruned structure, {args.epochs} epoch(s)")
    tuned = train(TrainOptions(out=str(out / "finetune"), finetune=str(pruned_path), lr=0.02, **common))  # type: ignore[arg-type]
    final = out / "finetune" / "last.pt"
    print(f"   val mAP@0.5 {tuned['history'][-1]['val']['voc07_map']:.4f}")

    print("== 4. export: FP32 and INT8 end2end ONNX, parity against PyTorch")
    files = []
    for name, ckpt in (("unpruned", source), ("pruned", final)):
        rep = run_export(ExportRequest(model=ckpt, out_dir=out / "export", name=name, layouts=("end2end",), int8=True,
                                       calib=data / "train", calib_num=32, parity_images=sample_images(),
                                       time_runs=0))  # fmt: skip
        files += [a["path"] for a in rep["artifacts"]]
        print("   " + ", ".join(f"{Path(a['path']).name} {a['size_mb']:.2f} MB" for a in rep["artifacts"]))

    print("== 5. mfssd-bench --fps: unpruned vs pruned, FP32 vs INT8 (batch 1 and 8)")
    return bench(["--fps", "--models", ",".join(files), "--batch-sizes", "1,8", "--seconds", "0.5", "--no-peers",
                  "--no-memory", "-q"])  # fmt: skip


if __name__ == "__main__":
    from mfssd_deploy.cli import run_cli  # bad input: one line, exit code 2

    raise SystemExit(run_cli("prune_and_deploy.py", main))
