#!/usr/bin/env bash
# The architecture comparison of the paper at small scale (synthetic small objects, CPU protocol).
# Resumable: rerun after an interruption and finished runs are kept, the stopped one resumes.
# On real data with the paper's settings: benchmarks/ablation/reproduce.sh --data VOCdevkit --width 1 --epochs 300
set -euo pipefail
cd "$(dirname "$0")/../.."
exec .venv/bin/python benchmarks/ablation/run.py "$@"
