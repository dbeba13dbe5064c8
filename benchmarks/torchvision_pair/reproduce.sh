#!/usr/bin/env bash
# torchvision's ssd300_vgg16 against this project's import of the same weights (seeded, background bias
# raised: docs/importing.md), every artifact of the import in each CPU runtime, batch 1 and 8.
# About 4 minutes on 2 CPU cores (the first run also exports the import: +1 minute).
# Run from the repository root on an otherwise idle machine, after `make demo` or `make test` (they make .venv).
set -euo pipefail
OUT=${OUT:-benchmarks/torchvision_pair}
.venv/bin/mfssd-bench --fps --models torchvision-import --batch-sizes 1,8 --seconds ${SECONDS_PER_CONFIG:-3} --no-memory \
    --json "$OUT/results.json" --markdown "$OUT/results.md" "$@"
