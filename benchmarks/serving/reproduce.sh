#!/usr/bin/env bash
# Regenerate the serving load figure (results.json, results.md): mfssd-serve's image model under 32 concurrent
# clients for 30 s per configuration (3 configurations), against the local Detector in one process.
# About 3.5 minutes on 2 CPU cores. Run from the repository root on an otherwise idle machine, after `make test`
# (it makes .venv with the [serve] extra: nvidia-pytriton's tritonserver).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec .venv/bin/python benchmarks/serving/run.py "$@"
