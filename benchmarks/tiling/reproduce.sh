#!/usr/bin/env bash
# Regenerate benchmarks/tiling/results.{json,md} and tile_grid.jpg: tiled and native-resolution inference of the demo model on the
# large-frame set (24 frames, 1920x1080 and 1280x720), ours against SAHI 0.12.8 driving the same Detector.
# About 25 minutes on 2 CPU cores (accuracy ~15, speed ~10). Run from the repository root after `make test`
# (it makes .venv with the [dev] extra, which has sahi); the speed rounds wait for a quiet machine
# (1-minute load <= 1.5, up to 15 minutes) and say so in results.md when it never came.
set -euo pipefail
.venv/bin/python benchmarks/tiling/run.py --out benchmarks/tiling --data "${DATA:-runs/tiling_data}" "$@"
