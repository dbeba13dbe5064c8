#!/usr/bin/env bash
# The architecture comparison of the paper at small scale (synthetic small objects, CPU protocol):
# first the LR probe that fixes each variant's learning rate (with and without clipping), then every run.
# Resumable: rerun after an interruption and finished probes and runs are kept, the stopped run resumes.
# On real data with the paper's settings: benchmarks/ablation/reproduce.sh --data VOCdevkit --width 1 --epochs 300
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/python benchmarks/ablation/probe.py
exec .venv/bin/python benchmarks/ablation/run.py "$@"
