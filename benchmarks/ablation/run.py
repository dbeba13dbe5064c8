"""The paper's architecture claim at small scale: SSD vs FSSD vs MFSSD vs MFSSD-BN (and MFSSD-BN 1:1:1).

One protocol for every variant: the same data, augmentation, schedule, epochs, batch, learning-rate
rule and evaluation images, no per-variant tuning; several seeds (init and data order both follow
--seed). Every run trains through `mfssd-train` into RUNS/VARIANT-sSEED and resumes from its last.pt
when a session ended mid-run; a finished run (metrics.json) is never trained again. Evaluation is
`mfssd-eval`'s code on the same held-out images: VOC07 mAP@0.5, COCO AP/AP50/AP75/APs/APm/APl and
per-class AP. `--report` only rebuilds results.json, report.md and the plot from finished runs. A call
whose report would leave out a run that --out's results.json records is refused (extra seeds of a few
variants go to another --out, then `--report` with every seed rebuilds the record).

    python benchmarks/ablation/run.py                 # synthetic small objects, the CPU protocol
    python benchmarks/ablation/run.py --data VOCdevkit --width 1 --epochs 300 --batch 32   # real data
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VARIANTS = ("ssd300_11620", "fssd", "mfssd", "mfssd_bn", "mfssd_bn_111")
LABELS = {"ssd300_11620": "SSD300 (11,620 priors)", "fssd": "FSSD", "mfssd": "MFSSD (2:1:1)",
          "mfssd_bn": "MFSSD-BN (2:1:1)", "mfssd_bn_111": "MFSSD-BN 1:1:1 (ablation)"}  # fmt: skip
# The paper's own figures (Table II: VOC07 test mAP; Table III: COCO APs), for the side column only.
PAPER = {"ssd300_11620": {"voc07": 77.7, "coco_aps": None}, "fssd": {"voc07": 78.6, "coco_aps": 8.7},
         "mfssd": {"voc07": 80.4, "coco_aps": 12.1}, "mfssd_bn": {"voc07": 81.2, "coco_aps": None},
         "mfssd_bn_111": {"voc07": None, "coco_aps": None}}  # fmt: skip
METRICS = ("map50", "AP", "AP50", "AP75", "APs", "APm", "APl")


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="dataset root (COCO-format, COCO 2017 or VOC); default: a dedicated synthetic set")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated (default: all five)")
    ap.add_argument("--seeds", default="0,1", help="comma-separated seeds (default 0,1)")
    ap.add_argument("--width", type=float, default=0.25, help="channel width multiplier (default 0.25)")
    ap.add_argument("--epochs", type=int, default=8, help="epochs per run (default 8)")
    ap.add_argument("--batch", type=int, default=16, help="batch size (default 16)")
    ap.add_argument("--warmup-epochs", type=float, default=1.0,
                    help="linear LR warmup for every variant (default 1 epoch: mfssd-train's rule, 5 of 300 "
                         "epochs scaled, leaves 2 steps at this budget)")  # fmt: skip
    ap.add_argument("--train-images", type=int, default=1500, help="synthetic training images (default 1500)")
    ap.add_argument("--val-images", type=int, default=300, help="synthetic held-out images (default 300)")
    ap.add_argument("--lr", type=float,
                    help="one base LR for every variant instead of the protocol's rule (each variant at the "
                         "largest ladder LR at which its probe in --probe was stable)")  # fmt: skip
    ap.add_argument(
        "--probe",
        default=str(HERE / "probe.json"),
        help="probe.py's results, which fix each variant's LR (default benchmarks/ablation/probe.json)",
    )
    ap.add_argument("--clip-grad-norm", type=float, default=35.0,
                    help="gradient-norm clipping for every variant (default 35, mmdetection's RetinaNet recipe; "
                         "0 disables)")  # fmt: skip
    ap.add_argument("--zoom-out", type=float, default=4.0,
                    help="mfssd-train's zoom-out augmentation, max canvas factor (default 4, mfssd-train's; 1 "
                         "disables it, as the demo model's recipe does: protocol v2)")  # fmt: skip
    ap.add_argument("--large-frames", type=int, default=24,
                    help="second view: the large-frame set (generate_large seed 1), tiled at native resolution "
                         "(default 24 frames; 0 skips)")  # fmt: skip
    ap.add_argument("--max-steps", type=int, help="stop each run after N steps (smoke runs)")
    ap.add_argument("--runs", default=str(HERE / "runs"), help="run folders (default benchmarks/ablation/runs)")
    ap.add_argument("--out", default=str(HERE), help="results.json, report.md, plot (default benchmarks/ablation)")
    ap.add_argument("--report", action="store_true", help="only rebuild the report from finished runs")
    return ap.parse_args()


def synthetic(root: Path, train: int, val: int) -> Path:
    """A dedicated synthetic set (seed 17: not the demo model's data); 52% of its objects are small (< 32x32 px)."""
    from mfssd_deploy.data.synth import generate

    data = root / f"synth-seed17-{train}-{val}"
    if not (data / "annotations" / "val.json").is_file():
        generate(data, train, val, seed=17, show_progress=True)
    return data


def tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def large_frames(root: Path, frames: int) -> Path:
    """The tiling benchmark's large-frame set (1920x1080 / 1280x720, many small objects)."""
    from mfssd_deploy.data.synth import generate_large

    data = root / f"large-seed1-{frames}"
    if not (data / "annotations" / "val.json").is_file():
        generate_large(data, frames, seed=1, show_progress=False)
    return data


def variant_lr(variant: str, args: argparse.Namespace) -> float | None:
    """The protocol's LR for a variant: --lr if given, else the largest ladder rung at which its probe was
    stable; None when the whole ladder was probed and no rung was (the variant does not survive)."""
    if args.lr is not None:
        return float(args.lr)
    from protocol import LADDER, chosen_lr

    probe = Path(args.probe)
    if not probe.is_file():
        raise SystemExit(f"run.py: error: no {probe}; run benchmarks/ablation/probe.py first (or give --lr)")
    clip = args.clip_grad_norm or None
    rows = [r for r in json.loads(probe.read_text())["probes"] if r["variant"] == variant and r["clip"] == clip]
    lr = chosen_lr(rows, variant, clip)
    if lr is None and len(rows) < len(LADDER):
        raise SystemExit(f"run.py: error: {probe} has no stable LR for {variant} with clip {clip} yet; probe it first")
    return lr


def run_one(variant: str, seed: int, data: Path, args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.runs) / f"{variant}-s{seed}"
    done = out / "metrics.json"
    if done.is_file():
        return json.loads(done.read_text())
    out.mkdir(parents=True, exist_ok=True)
    lr = variant_lr(variant, args)
    if lr is None:  # a result: under the protocol's rule this variant has no learning rate to train at
        metrics = {"variant": variant, "seed": seed, "lr": None, "clip_grad_norm": args.clip_grad_norm or None,
                   "diverged": "no stable LR on the ladder (probe.json)", "train_seconds": 0.0}  # fmt: skip
        done.write_text(json.dumps(metrics, indent=1))
        print(f"{variant} seed {seed}: no stable LR on the ladder, not trained", flush=True)
        return metrics
    cmd = [tool("mfssd-train"), "--data", str(data), "--out", str(out), "--variant", variant, "--width",
           str(args.width), "--epochs", str(args.epochs), "--batch", str(args.batch), "--seed", str(seed),
           "--warmup-epochs", str(args.warmup_epochs), "--zoom-out", str(args.zoom_out),
           "--val-split", "", "--no-progress", "--json", str(out / "train.json")]  # fmt: skip
    if args.max_steps:
        cmd += ["--max-steps", str(args.max_steps)]
    cmd += ["--lr", str(lr)]
    if args.clip_grad_norm:
        cmd += ["--clip-grad-norm", str(args.clip_grad_norm)]
    if (out / "last.pt").is_file():
        cmd += ["--resume", str(out / "last.pt")]
    t0 = time.time()
    print(f"training {variant} seed {seed} -> {out}", flush=True)
    with open(out / "train.stderr", "a") as err:
        code = subprocess.run(cmd, stderr=err).returncode
    if code != 0:
        said = (out / "train.stderr").read_text()
        if "loss became" not in said:
            raise SystemExit(f"run.py: error: {variant} seed {seed} failed (exit {code}); see {out / 'train.stderr'}")
        step = said.rsplit("loss became", 1)[1].split("\n", 1)[0].strip()
        metrics = {"variant": variant, "seed": seed, "lr": lr, "clip_grad_norm": args.clip_grad_norm or None,
                   "diverged": f"loss became {step}", "train_seconds": time.time() - t0}  # fmt: skip
        done.write_text(json.dumps(metrics, indent=1))  # a result: this variant does not survive the protocol
        print(f"{variant} seed {seed} diverged: loss became {step}", flush=True)
        return metrics
    seconds = time.time() - t0 + _previous_seconds(out)
    (out / "time.json").write_text(json.dumps({"train_seconds": seconds}))
    ev = out / "eval.json"
    subprocess.run([tool("mfssd-eval"), "--model", str(out / "last.pt"), "--data", str(data), "--json", str(ev),
                    "--no-progress"], check=True)  # fmt: skip
    metrics = _metrics(variant, seed, out, json.loads(ev.read_text()), seconds, args)
    metrics.update(lr=lr, clip_grad_norm=args.clip_grad_norm or None)
    if args.large_frames:
        large = large_frames(Path(args.runs), args.large_frames)
        ev_large = out / "eval_large.json"
        subprocess.run([tool("mfssd-eval"), "--model", str(out / "last.pt"), "--data", str(large), "--tile", "model",
                        "--json", str(ev_large), "--no-progress"], check=True)  # fmt: skip
        lv = json.loads(ev_large.read_text())
        metrics["large"] = {"map50": lv["voc07_map"], **{k: lv.get("coco", {}).get(k) for k in METRICS[1:]}}
    done.write_text(json.dumps(metrics, indent=1))
    return metrics


def _previous_seconds(out: Path) -> float:
    """Training time of earlier sessions of this run that reached their end (time.json); the part of a
    session stopped mid-run is not counted (its epochs are redone from last.pt anyway)."""
    f = out / "time.json"
    return float(json.loads(f.read_text())["train_seconds"]) if f.is_file() else 0.0


def _metrics(variant: str, seed: int, out: Path, ev: dict[str, Any], seconds: float,
             args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    from mfssd_deploy.checkpoint import load_model
    from mfssd_deploy.complexity import measure
    from mfssd_deploy.models import build_model

    model = load_model(out / "last.pt")
    small, full = measure(model), measure(build_model(variant, model.config.num_classes, width=1.0))
    coco = ev.get("coco", {})
    return {
        "variant": variant, "seed": seed, "width": args.width, "epochs": args.epochs, "batch": args.batch,
        "params": small.params, "params_full_width": full.params, "gmacs": small.gflops / 2,
        "train_seconds": seconds, "map50": ev["voc07_map"],
        **{k: coco.get(k) for k in METRICS if k != "map50"},
        "per_class": {c: v["ap07"] for c, v in ev.get("per_class", {}).items()},
    }  # fmt: skip


def summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for v in VARIANTS:
        every = [r for r in runs if r["variant"] == v]
        rs = [r for r in every if not r.get("diverged")]
        if not every:
            continue
        if not rs:
            out[v] = {"seeds": 0, "diverged": len(every), "lr": every[0].get("lr")}
            continue
        row: dict[str, Any] = {
            "seeds": len(rs),
            "diverged": len(every) - len(rs),
            "params": rs[0]["params"],
            "params_full_width": rs[0]["params_full_width"],
            "gmacs": rs[0]["gmacs"],
            "lr": rs[0].get("lr"),
        }
        for m in METRICS:
            vals = [r[m] for r in rs if r.get(m) is not None]
            if vals:
                row[m] = {"mean": statistics.fmean(vals), "min": min(vals), "max": max(vals)}
        for m in ("map50", "APs"):
            vals = [r["large"][m] for r in rs if r.get("large", {}).get(m) is not None]
            if vals:
                row[f"large_{m}"] = {"mean": statistics.fmean(vals), "min": min(vals), "max": max(vals)}
        out[v] = row
    return out


def report_md(summ: dict[str, dict[str, Any]], runs: list[dict[str, Any]], protocol: dict[str, Any]) -> str:
    def cell(row: dict[str, Any], m: str) -> str:
        s = row.get(m)
        return "" if s is None else f"{100 * s['mean']:.1f} ({100 * s['min']:.1f}-{100 * s['max']:.1f})"

    lines = ["# SSD vs FSSD vs MFSSD vs MFSSD-BN at small scale", "",
             f"Protocol: {json.dumps(protocol)}", "",
             "Mean over seeds (min-max), percent. Paper columns: VOC07 test mAP (Table II) and COCO APs "
             "(Table III), full size on real data: a different experiment, shown for the ordering only.", "",
             "| variant | params (full width) | LR | seeds | mAP@0.5 | AP | AP50 | AP75 | APs | APm | APl "
             "| large frames mAP@0.5 | large frames APs | paper VOC07 | paper APs |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for v, row in summ.items():
        p = PAPER[v]
        if not row["seeds"]:
            lines.append(f"| {LABELS[v]} | | {row.get('lr') or 'none'} | 0 ({row['diverged']} did not survive) |"
                         + " |" * (len(METRICS) + 4))  # fmt: skip
            continue
        seeds = f"{row['seeds']}" + (f" ({row['diverged']} did not survive)" if row.get("diverged") else "")
        lines.append(f"| {LABELS[v]} | {row['params']:,} ({row['params_full_width']:,}) | {row.get('lr') or ''} "
                     f"| {seeds} | " + " | ".join(cell(row, m) for m in METRICS)
                     + f" | {cell(row, 'large_map50')} | {cell(row, 'large_APs')}"
                     + f" | {p['voc07'] or ''} | {p['coco_aps'] or ''} |")  # fmt: skip
    diverged = [r for r in runs if r.get("diverged")]
    if diverged:
        said = "; ".join(f"{LABELS[r['variant']]} seed {r['seed']}: {r['diverged']}" for r in diverged)
        lines += ["", f"Did not survive the protocol (no metrics): {said}"]
    total = sum(r["train_seconds"] for r in runs)
    lines += ["", f"{len(runs)} runs, {total / 3600:.2f} h of training in all."]
    return "\n".join(lines) + "\n"


def plot(summ: dict[str, dict[str, Any]], runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, m, title in ((axes[0], "map50", "mAP@0.5 (VOC07)"), (axes[1], "APs", "COCO APs")):
        names = [v for v in summ if m in summ[v]]
        for i, v in enumerate(names):
            vals = [100 * r[m] for r in runs if r["variant"] == v and r.get(m) is not None]
            ax.scatter([i] * len(vals), vals, color="C0", alpha=0.6)
            ax.errorbar(i, 100 * summ[v][m]["mean"], fmt="o", color="C1")
        ax.set_xticks(range(len(names)), [LABELS[v] for v in names], rotation=30, ha="right", fontsize=8)
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")  # the path is atomic_path's temporary name, not *.png


def _would_drop_recorded_runs(results: Path, planned: set[tuple[str, int]]) -> str:
    """Why writing a report for `planned` over an earlier results.json would lose runs it records ("" if
    it would not): a call with fewer --variants or --seeds would replace a whole comparison with part of it."""
    if not results.is_file():
        return ""
    try:
        had = {(r["variant"], int(r["seed"])) for r in json.loads(results.read_text())["runs"]}
    except (ValueError, KeyError, TypeError) as e:
        return f"{results} is not a results file of this runner ({type(e).__name__}); move it away or use another --out"
    lost = ", ".join(f"{v} seed {s}" for v, s in sorted(had - planned))
    return (f"{results} records runs this call would leave out ({lost}); pass their --variants and --seeds (and "
            "a --runs folder that has them) as well, or write to another --out") if lost else ""  # fmt: skip


def main() -> int:
    args = parse()
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        print(f"run.py: error: unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    seeds = [int(s) for s in args.seeds.split(",") if s]
    out = Path(args.out)
    problem = _would_drop_recorded_runs(out / "results.json", {(v, s) for s in seeds for v in variants})
    if problem:  # checked before any training: a report that forgets recorded runs is never written
        print(f"run.py: error: {problem}", file=sys.stderr)
        return 2
    runs_dir = Path(args.runs)
    data = Path(args.data) if args.data else synthetic(runs_dir, args.train_images, args.val_images)
    protocol = {"data": "synthetic seed 17 (52% small objects)" if not args.data else str(args.data),
                "width": args.width, "epochs": args.epochs, "batch": args.batch, "seeds": seeds,
                "warmup_epochs": args.warmup_epochs, "zoom_out": args.zoom_out,
                "lr": args.lr if args.lr is not None else f"largest stable rung of {args.probe}",
                "clip_grad_norm": args.clip_grad_norm or None, "large_frames": args.large_frames,
                "train_images": None if args.data else args.train_images,
                "val_images": None if args.data else args.val_images}  # fmt: skip
    runs = []
    for seed in seeds:  # seed-major: a stopped session leaves every variant with the same seeds done
        for v in variants:
            done = runs_dir / f"{v}-s{seed}" / "metrics.json"
            if args.report:
                if done.is_file():
                    runs.append(json.loads(done.read_text()))
                continue
            runs.append(run_one(v, seed, data, args))
    problem = _would_drop_recorded_runs(out / "results.json", {(r["variant"], int(r["seed"])) for r in runs})
    if problem:  # --report in a RUNS folder that lacks some of the recorded runs' metrics.json
        print(f"run.py: error: {problem}", file=sys.stderr)
        return 2
    summ = summary(runs)
    from mfssd_deploy.fileio import atomic_path

    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps({"protocol": protocol, "runs": runs, "summary": summ}, indent=1))
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(report_md(summ, runs, protocol))
    if runs:
        with atomic_path(out / "plot.png") as tmp:
            plot(summ, runs, tmp)
    print((out / "report.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
