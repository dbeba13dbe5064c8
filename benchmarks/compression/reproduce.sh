#!/usr/bin/env bash
# Rebuild the pruned demo model and the compression report from the unpruned demo model.
# About 40 minutes on 2 CPU cores. Run from the repository root after `make demo` (it makes .venv).
set -euo pipefail
BIN=.venv/bin
W=${WORK:-runs/compression}
DEMO=mfssd_deploy/assets/demo/mfssd_bn_w025_synth.pt
mkdir -p "$W"
# The demo model's training data, and a held-out set (seed 1: its val split is the report's test set).
[ -f "$W/data/annotations/train.json" ] || $BIN/mfssd-data synth --out "$W/data" --train 4000 --val 500 --seed 0
[ -f "$W/heldout/annotations/val.json" ] || $BIN/mfssd-data synth --out "$W/heldout" --train 100 --val 500 --seed 1
# 1. sparse training: L1 on the BN gammas (network slimming), starting from the demo model
$BIN/mfssd-train --finetune "$DEMO" --data "$W/data" --out "$W/sparse" --epochs 4 --batch 16 --lr 0.03 \
    --sparsity 1e-2 --warmup-epochs 0.2 --zoom-out 1 --workers 1 --seed 0 --eval-every 2
# 2. prune by |gamma|, globally, to 38% fewer parameters; widths multiples of 8 (faster kernels)
$BIN/mfssd-prune "$W/sparse/last.pt" --target-params 1380000 --round-to 8 --out "$W/pruned.pt"
# 3. fine-tune the pruned structure
$BIN/mfssd-train --finetune "$W/pruned.pt" --data "$W/data" --out "$W/finetune" --epochs 4 --batch 16 --lr 0.02 \
    --warmup-epochs 0.2 --zoom-out 1 --workers 1 --seed 0 --eval-every 2
# 4. the report: unpruned, sparse, pruned, pruned + fine-tuned
$BIN/python benchmarks/compression/report.py --data "$W/heldout" \
    "$DEMO" "$W/sparse/last.pt" "$W/pruned.pt" "$W/finetune/best.pt"
