#!/usr/bin/env bash
# GPU check (issue 15 item 6): on a Linux machine with a CUDA GPU and PyTorch, run the GPU-marked tests
# (tests/test_gpu.py: torch backend on CUDA, raw-layout decode + batched NMS on CUDA equal to the CPU,
# CUDA stage timing) and a short `mfssd-bench --fps --device cuda` of the PyTorch rows and the peers.
#
#   tools/gpu_check.sh OUT_DIR
#
# Writes into OUT_DIR: versions.txt, nvidia-smi.txt, pytest-gpu.xml (JUnit) + pytest-gpu.log,
# bench.json + bench.md + bench.log. Without a CUDA GPU visible to torch it says so and exits 0.
#
# Assumes: TensorRT and onnxruntime-gpu are NOT needed. The repository's package is pip-installable
# (pip install -e ".[torch]"); the benchmark also needs the [export] extra (onnx, onnxslim: its model
# groups are exported in the run). PyTorch is never reinstalled: an existing torch (and torchvision) is
# kept even when older than the pyproject pin (torch>=2.1), because the package itself is installed
# with --no-deps and the other dependencies under a constraint `torch==<the installed version>`.
# What is missing is installed into the current interpreter when it is a virtualenv, else into
# OUT_DIR/venv (created with --system-site-packages, so it sees the system's torch). When everything
# already imports, nothing is installed (works offline) and the repository runs from PYTHONPATH.
#
# Environment: PYTHON (default python3): the interpreter that has torch with CUDA;
# BENCH_SECONDS (default 1): timed work per configuration and batch size.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUT_DIR   (runs the GPU tests and a short GPU benchmark, results into OUT_DIR)" >&2
    exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$1"
OUT="$(cd "$1" && pwd)"
PY="${PYTHON:-python3}"
BENCH_SECONDS="${BENCH_SECONDS:-1}"

if ! command -v "$PY" >/dev/null 2>&1; then
    echo "gpu_check: no $PY on PATH; set PYTHON=/path/to/python (one with PyTorch)" >&2
    exit 2
fi
if ! "$PY" -c "import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)"; then
    echo "gpu_check: $PY is Python $("$PY" -c 'import platform; print(platform.python_version())'); mfssd-deploy needs >= 3.10" >&2
    exit 2
fi
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        echo "gpu_check: $PY has no PyTorch; install a CUDA build of torch first (this script never installs torch)" >&2
        exit 2
    fi
    echo "gpu_check: no CUDA GPU on this machine (no PyTorch, no nvidia-smi GPU): nothing to check"
    exit 0
fi

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(uname -a)"
    echo "repo: $(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (modified)')"
    "$PY" -c "import sys, torch; print('python:', sys.version.split()[0]); print('torch:', torch.__version__, 'cuda:', torch.version.cuda, 'available:', torch.cuda.is_available())"
} >"$OUT/versions.txt" 2>&1

if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || true
else
    echo "nvidia-smi not found" >"$OUT/nvidia-smi.txt"
fi

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; then
    echo "gpu_check: no CUDA GPU visible to torch on this machine: nothing to check (see $OUT/versions.txt)"
    exit 0
fi

# --- dependencies: what is missing, installed around the existing torch --------------------------------
need_install() {
    "$PY" - "$ROOT" <<'EOF'
import importlib, sys
root = sys.argv[1]
sys.path.insert(0, root)
missing = []
for mod in ("mfssd_deploy", "numpy", "cv2", "onnxruntime", "tqdm", "torchvision", "onnx", "onnxslim", "pytest"):
    try:
        importlib.import_module(mod)
    except Exception:
        missing.append(mod)
print(" ".join(missing))
EOF
}
MISSING="$(need_install)"
if [[ -n "$MISSING" ]]; then
    echo "gpu_check: installing what is missing ($MISSING), keeping torch"
    if ! "$PY" -c "import sys; sys.exit(0 if sys.prefix != sys.base_prefix else 1)"; then
        "$PY" -m venv --system-site-packages "$OUT/venv"
        PY="$OUT/venv/bin/python"
    fi
    TORCH_VERSION="$("$PY" -c "import torch; print(torch.__version__)")"
    {
        echo "torch==$TORCH_VERSION"
        # torch < 2.3 is built against NumPy 1: NumPy 2 would break torch.from_numpy
        "$PY" -c "import torch; v = tuple(int(p) for p in torch.__version__.split('+')[0].split('.')[:2]); print('numpy<2' if v < (2, 3) else '')"
        "$PY" -c "import torchvision; print('torchvision==' + torchvision.__version__)" 2>/dev/null || true
    } >"$OUT/constraints.txt"
    "$PY" -m pip install --no-deps -e "$ROOT"
    # the base dependencies + the [torch] (torchvision) and [export] extras of pyproject.toml, less torch
    "$PY" -m pip install -c "$OUT/constraints.txt" "numpy>=1.24" "opencv-python-headless>=4.8" \
        "onnxruntime>=1.17" "tqdm>=4.66" torchvision "onnx>=1.15" "onnxslim>=0.1.30" \
        "onnxconverter-common>=1.14" "pytest>=8"
    "$PY" -c "import torch; assert torch.__version__ == '$TORCH_VERSION', torch.__version__"  # torch untouched
    "$PY" -m pip freeze >"$OUT/pip-freeze.txt" 2>&1 || true
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import numpy, torchvision, onnxruntime, mfssd_deploy; print('numpy:', numpy.__version__); print('torchvision:', torchvision.__version__); print('onnxruntime:', onnxruntime.__version__, onnxruntime.get_available_providers()); print('mfssd_deploy:', mfssd_deploy.__file__)" >>"$OUT/versions.txt" 2>&1

# --- the GPU tests and the benchmark: both run even if one fails; the exit code says whether all passed --
status=0
cd "$ROOT"
echo "gpu_check: GPU tests -> $OUT/pytest-gpu.xml"
"$PY" -m pytest -m gpu tests/test_gpu.py -v -rs -p no:cacheprovider --junitxml="$OUT/pytest-gpu.xml" \
    2>&1 | tee "$OUT/pytest-gpu.log" || status=1

echo "gpu_check: mfssd-bench --fps --device cuda (PyTorch rows and peers) -> $OUT/bench.json"
# demo: the trained demo model's PyTorch CUDA row; full: the full-size model's row, which also brings the
# peers (torchvision ssd300_vgg16, eager MFSSD-BN + reference NMS). --formats eager: PyTorch rows only.
"$PY" -m mfssd_deploy.cli.bench --fps --device cuda --models demo,full --formats eager --batch-sizes 1,8 \
    --seconds "$BENCH_SECONDS" --warmup 3 --no-memory --no-engines --cache "$OUT/bench-cache" \
    --json "$OUT/bench.json" --markdown "$OUT/bench.md" 2>&1 | tee "$OUT/bench.log" || status=1

if [[ $status -eq 0 ]]; then
    echo "gpu_check: all passed; results in $OUT"
else
    echo "gpu_check: FAILED (see $OUT/pytest-gpu.log, $OUT/bench.log)" >&2
fi
exit $status
