"""mfssd-prune: network slimming of a checkpoint (prune by BN scale), with a before/after table.

Fixed budget:     mfssd-prune CKPT --ratio 0.3 --out pruned.pt        (fraction of channels removed)
                  mfssd-prune CKPT --target-params 1500000 --out pruned.pt
Accuracy-aware:   mfssd-prune CKPT --max-map-drop 1.0 --val DATA --out pruned.pt
    searches the largest ratio whose mAP@0.5, after a short fine-tune on DATA's train split, stays
    within D points of the unpruned model, and prints every step of the search.
Fine-tune the result with: mfssd-train --finetune pruned.pt --data DATA
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from mfssd_deploy.cli import run_cli
from mfssd_deploy.cli.options import DataArgs
from mfssd_deploy.errors import MfssdError


def cpu_ms(model: Any, size: tuple[int, int], repeats: int = 5) -> float:
    import torch

    from mfssd_deploy.timing import time_calls

    x = torch.randn(1, 3, size[1], size[0])  # size: (width, height)
    with torch.inference_mode():  # two warm-up calls: allocation and kernel choice
        return statistics.median(time_calls(lambda: model(x), warmup=2, iters=repeats)) * 1000


def facts(model: Any) -> dict[str, float]:
    from mfssd_deploy.complexity import measure
    from mfssd_deploy.models import config_of

    c = measure(model)
    return {
        "params": c.params,
        "size_mb": c.size_mb,
        "gmacs": c.gmacs,
        "cpu_ms": cpu_ms(model, config_of(model).input_wh),
    }


def format_table(before: dict[str, float], after: dict[str, float]) -> str:
    rows = [
        ("parameters", "params", "{:,.0f}"),
        ("size MB (FP32)", "size_mb", "{:.2f}"),
        ("G multiply-adds", "gmacs", "{:.3f}"),
        ("CPU ms/image (PyTorch, batch 1)", "cpu_ms", "{:.1f}"),
    ]
    lines = ["| | before | after | after / before |", "|---|---:|---:|---:|"]
    for label, key, fmt in rows:
        lines.append(
            f"| {label} | {fmt.format(before[key])} | {fmt.format(after[key])} | {after[key] / before[key]:.3f} |"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="mfssd-prune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("checkpoint", nargs="?", help="checkpoint to prune (default: the bundled demo model)")
    budget = ap.add_mutually_exclusive_group(required=True)
    budget.add_argument("--ratio", type=float, help="fraction of prunable channels to remove, globally by |gamma|")
    budget.add_argument("--target-params", type=int, help="prune until at most this many parameters remain")
    budget.add_argument("--max-map-drop", type=float, help="largest pruning within D points of mAP@0.5 (needs --val)")
    ap.add_argument("--out", required=True, help="pruned checkpoint to write (a new file: an existing one, the input "
                    "included, is refused)")  # fmt: skip
    ap.add_argument("--round-to", type=int, default=8, metavar="N",
                    help="keep a multiple of N channels per layer (default 8: ONNX Runtime runs the same parameter "
                    "count 15-25%% faster, TensorRT kernels tile by 8+, and the bundled pruned model lost no "
                    "accuracy to it); 1 = the paper's exact |gamma| order")  # fmt: skip
    ap.add_argument("--val", help="dataset: with --max-map-drop its train split fine-tunes and its val split scores; "
                    "with --ratio/--target-params the val split gives mAP before and after pruning")  # fmt: skip
    ap.add_argument("--search-epochs", type=int, default=2, help="fine-tune epochs per search step (default 2)")
    ap.add_argument("--search-steps", type=int, default=4, help="bisection steps of the search (default 4)")
    ap.add_argument("--eval-images", type=int, help="score on the first N val images only (faster search)")
    ap.add_argument("--json", help="write the report to this file")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars (the search runs without them)")
    DataArgs.add(ap)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mfssd_deploy.errors import require

    require("torch", "train", "mfssd-prune")  # before a model is loaded or, with --max-map-drop, evaluated
    require("torch_pruning", "train", "mfssd-prune")
    from mfssd_deploy.checkpoint import load_model, save_checkpoint
    from mfssd_deploy.demo_assets import demo_model
    from mfssd_deploy.fileio import sha256_file, write_json
    from mfssd_deploy.prune import prune_model, pruning_record, widths_of

    src = Path(args.checkpoint) if args.checkpoint else demo_model()
    out = Path(args.out)
    if out.exists():
        same = out.resolve() == src.resolve()
        raise MfssdError(f"--out {out} {'is the checkpoint being pruned' if same else 'already exists'}; "
                         "give a new file name (nothing is written over)")  # fmt: skip
    model = load_model(src)
    report: dict[str, Any] = {"source": str(src)}
    if args.max_map_drop is not None:
        if not args.val:
            raise MfssdError("--max-map-drop needs --val DATA (train split to fine-tune, val split to score)")
        result, search = accuracy_search(src, model, args)
        report["search"] = search
    else:
        _warn_if_not_sparse(src)
        result = prune_model(model, ratio=args.ratio, target_params=args.target_params, round_to=args.round_to)
        if args.val:
            report["accuracy"] = _accuracy_line(model, result.model, args)
    before, after = facts(model), facts(result.model)
    record = pruning_record(result, sha256_file(src), widths_of(model))
    save_checkpoint(args.out, result.model, pruning=record, meta={"pruned_from": str(src)})
    print(f"pruned {src.name}: {result.ratio:.3f} of the prunable channels removed -> {args.out}")
    print(format_table(before, after))
    print(f"fine-tune it: mfssd-train --finetune {args.out} --data DATA")
    report.update(before=before, after=after, pruning=record, out=args.out)
    if args.json:
        write_json(args.json, report)
    return 0


def _warn_if_not_sparse(src: Path) -> None:
    """Network slimming removes the channels with the smallest |gamma|; without sparse training
    (--sparsity) none are near zero, and the pruned model loses most of its accuracy until fine-tuned."""
    from mfssd_deploy.checkpoint import read_checkpoint

    sparsity = read_checkpoint(src).get("meta", {}).get("train_args", {}).get("sparsity")
    if not sparsity:
        print(f"warning: {src.name} was not trained with --sparsity: its channels are not near zero, so expect a "
              "large accuracy drop before fine-tuning (mfssd-train --finetune OUT); --val DATA prints it, "
              "--max-map-drop D --val DATA bounds it", file=sys.stderr)  # fmt: skip


def _accuracy_line(model: Any, pruned: Any, args: argparse.Namespace) -> dict[str, float]:
    """mAP@0.5 before and after pruning (no fine-tuning) on --val's val split, printed."""
    from mfssd_deploy.data.sources import open_dataset
    from mfssd_deploy.evaluation.runner import evaluate, torch_predictor

    source = open_dataset(args.val, "val", args.classes, args.format)
    names = model.config.class_names
    maps = {k: evaluate(torch_predictor(m), source, class_names=names, max_images=args.eval_images, coco=False,
                        progress=False)["voc07_map"] for k, m in (("before", model), ("after", pruned))}  # fmt: skip
    print(f"mAP@0.5 on {args.val}: {maps['before']:.4f} before, {maps['after']:.4f} after pruning "
          "(before fine-tuning)")  # fmt: skip
    return maps


def accuracy_search(src: Path, model: Any, args: argparse.Namespace) -> tuple[Any, list[dict[str, Any]]]:
    """Bisection on the channel ratio; each candidate is fine-tuned briefly, then scored."""
    from mfssd_deploy.checkpoint import save_checkpoint
    from mfssd_deploy.data.sources import open_dataset
    from mfssd_deploy.evaluation.runner import evaluate, torch_predictor
    from mfssd_deploy.prune import prune_model
    from mfssd_deploy.train.loop import TrainOptions, train

    source = open_dataset(args.val, "val", args.classes, args.format)
    names = model.config.class_names
    base = evaluate(torch_predictor(model), source, class_names=names, max_images=args.eval_images, coco=False,
                    progress=False)["voc07_map"]  # fmt: skip
    print(f"unpruned mAP@0.5 {base:.4f}; budget {args.max_map_drop:.2f} points")
    lo, hi = 0.0, 0.9
    best = None
    steps = []
    with tempfile.TemporaryDirectory(prefix="mfssd-prune.") as tmp:
        for step in range(args.search_steps):
            ratio = (lo + hi) / 2
            cand = prune_model(model, ratio=ratio, round_to=args.round_to)
            ckpt = save_checkpoint(Path(tmp) / f"r{step}.pt", cand.model)
            train(TrainOptions(data=str(args.val), out=str(Path(tmp) / f"ft{step}"), finetune=str(ckpt),
                               classes=args.classes, format=args.format,
                               epochs=args.search_epochs, val_split=None, progress=False, warmup=0.05))  # fmt: skip
            from mfssd_deploy.checkpoint import load_model

            tuned = load_model(Path(tmp) / f"ft{step}" / "last.pt")
            vmap = evaluate(torch_predictor(tuned), source, class_names=names, max_images=args.eval_images,
                            coco=False, progress=False)["voc07_map"]  # fmt: skip
            drop = 100 * (base - vmap)
            ok = drop <= args.max_map_drop
            steps.append({"ratio": ratio, "params": cand.params_after, "map": vmap, "drop_points": drop, "ok": ok})
            print(f"step {step + 1}: ratio {ratio:.3f}, {cand.params_after:,} params ({cand.kept:.1%}), "
                  f"mAP@0.5 {vmap:.4f} after {args.search_epochs} fine-tune epochs, drop {drop:+.2f}: "
                  f"{'within' if ok else 'over'} budget")  # fmt: skip
            if ok:
                best = (cand, tuned)
                lo = ratio
            else:
                hi = ratio
    if best is None:
        raise MfssdError(f"no pruning ratio kept mAP within {args.max_map_drop} points in {args.search_steps} steps")
    cand, tuned = best
    cand.model = tuned
    return cand, steps


def entry() -> None:
    sys.exit(run_cli("mfssd-prune", main))


if __name__ == "__main__":
    entry()
