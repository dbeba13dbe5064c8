#!/usr/bin/env bash
# Regenerate results.json/results.md: the INT8 Q/DQ placement of the TensorRT (s8) file, measured on the
# demo models. About 10 minutes on 2 CPU cores; run from the repository root on an idle machine after
# `make test` (it makes .venv with the [openvino] extra).
set -euo pipefail
.venv/bin/python benchmarks/int8_placement/run.py "$@"
