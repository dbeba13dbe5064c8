"""The divergence probe that fixes each variant's learning rate before any accuracy is seen.

The protocol's rule (benchmarks/ablation/README.md): every variant trains with the same gradient-norm
clipping and at the largest LR of a fixed ladder at which the probe is stable: the loss stays finite
through the first --steps optimizer steps of the real run's own schedule (same data, batch, warmup,
epochs, seed 0: the whole warmup and some steps at the peak LR), and its mean over the steps after the
first epoch is no higher than over the first epoch (a loss that climbs tenfold while still finite is
diverging, only slower). Settings are tried top-down and a variant's ladder stops at its first stable
rung; a setting already in probe.json is not run again.

    python benchmarks/ablation/probe.py                       # with and without clipping
    python benchmarks/ablation/probe.py --clip 35 --variants ssd300_11620
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import CLIP, LADDER, describe, stable
from run import HERE, VARIANTS, synthetic, tool


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated (default: all five)")
    ap.add_argument("--clips", default=f"none,{CLIP:g}", help="clip settings to probe, 'none' = no clipping")
    ap.add_argument("--steps", type=int, default=150, help="optimizer steps per setting (default 150: one "
                    "epoch of warmup at 1500 images / batch 16, then 56 at the peak LR)")  # fmt: skip
    ap.add_argument("--epochs", type=int, default=8, help="the real run's epochs (sets the schedule)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--warmup-epochs", type=float, default=1.0)
    ap.add_argument("--train-images", type=int, default=1500)
    ap.add_argument("--val-images", type=int, default=300)
    ap.add_argument("--runs", default=str(HERE / "runs"), help="where the synthetic set lives")
    ap.add_argument("--out", default=str(HERE / "probe.json"), help="results (default benchmarks/ablation/probe.json)")
    return ap.parse_args()


def probe_one(variant: str, lr: float, clip: float | None, data: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train the first --steps steps; finite, or the step at which the loss stopped being finite."""
    with tempfile.TemporaryDirectory(prefix="probe-") as tmp:
        out = Path(tmp) / "run"
        cmd = [tool("mfssd-train"), "--data", str(data), "--out", str(out), "--variant", variant,
               "--width", str(args.width), "--epochs", str(args.epochs), "--batch", str(args.batch),
               "--seed", "0", "--lr", str(lr), "--warmup-epochs", str(args.warmup_epochs),
               "--max-steps", str(args.steps), "--val-split", "", "--no-progress",
               "--json", str(Path(tmp) / "train.json")]  # fmt: skip
        if clip is not None:
            cmd += ["--clip-grad-norm", str(clip)]
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.time() - t0
        row: dict[str, Any] = {"variant": variant, "lr": lr, "clip": clip, "steps": args.steps, "seconds": seconds}
        found = re.search(r"loss became (\S+) at step (\d+)", proc.stderr)
        if proc.returncode == 0:
            hist = json.loads((Path(tmp) / "train.json").read_text())["history"]
            row.update(finite=True, losses=[round(h["loss"], 4) for h in hist])
        elif found:
            row.update(finite=False, diverged_at_step=int(found.group(2)), loss=found.group(1))
        else:
            raise SystemExit(f"probe.py: error: {variant} lr {lr} failed:\n{proc.stderr[-2000:]}")
    return row


def main() -> int:
    args = parse()
    variants = [v for v in args.variants.split(",") if v]
    clips = [None if c == "none" else float(c) for c in args.clips.split(",") if c]
    data = synthetic(Path(args.runs), args.train_images, args.val_images)
    path = Path(args.out)
    rows: list[dict[str, Any]] = json.loads(path.read_text())["probes"] if path.is_file() else []
    for clip in clips:
        for v in variants:
            for lr in LADDER:
                row = next((r for r in rows if (r["variant"], r["lr"], r["clip"]) == (v, lr, clip)), None)
                if row is None:
                    row = probe_one(v, lr, clip, data, args)
                    rows.append(row)
                    tmp = path.with_suffix(".json.tmp")
                    tmp.write_text(json.dumps({"ladder": LADDER, "steps": args.steps, "probes": rows}, indent=1))
                    tmp.replace(path)
                print(f"{v:14s} clip {clip!s:5s} lr {lr:<9g} {describe(row)}  ({row['seconds']:.0f} s)", flush=True)
                if stable(row):
                    break
    return 0


if __name__ == "__main__":
    sys.exit(main())
