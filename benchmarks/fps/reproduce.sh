#!/usr/bin/env bash
# Regenerate the recorded speed + accuracy results of this machine (results.{json,csv,md,png}).
# About 12 minutes on 2 CPU cores (the first run also exports the artifacts into the cache and quantizes
# the OpenVINO + NNCF peer: +5 minutes). The recorded run passed --no-memory (the per-configuration
# memory column, each configuration alone in a fresh process, adds about 8 minutes).
# Run from the repository root on an otherwise idle machine, after `make demo` or `make test` (they make .venv).
set -euo pipefail
OUT=${OUT:-benchmarks/fps}
.venv/bin/mfssd-bench --fps --val --batch-sizes 1,8 --seconds ${SECONDS_PER_CONFIG:-2} \
    --json "$OUT/results.json" --csv "$OUT/results.csv" --markdown "$OUT/results.md" --plot "$OUT/results.png" "$@"
