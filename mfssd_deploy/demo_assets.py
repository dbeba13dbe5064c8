"""Files shipped inside the package: the demo model, its ONNX exports, model cards and sample images.

This module is the one place that names them.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from mfssd_deploy.errors import MfssdError

ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_MODEL = ASSETS / "demo" / "mfssd_bn_w025_synth.pt"
DEMO_MODEL_CARD = ASSETS / "demo" / "MODEL_CARD.md"
# The demo model's end2end exports (mfssd-export --end2end --int8, command in MODEL_CARD.md): what the lean
# install (no torch) runs. Their metadata's source_sha256 is DEMO_MODEL's (tests/test_bundled_onnx.py).
DEMO_ONNX = ASSETS / "demo" / "mfssd_bn_w025_synth.end2end.onnx"
DEMO_ONNX_INT8 = ASSETS / "demo" / "mfssd_bn_w025_synth.int8.end2end.onnx"
PRUNED_DEMO_MODEL = ASSETS / "demo" / "mfssd_bn_w025_synth_pruned.pt"
PRUNED_MODEL_CARD = ASSETS / "demo" / "MODEL_CARD_PRUNED.md"
SAMPLES = ASSETS / "samples"


def model_not_found(path: str | Path) -> MfssdError:
    """'model not found', and where a bundled file of that name lives when the name is one of ours (a
    first-time user types the name from the README, not the path inside the installed package)."""
    bundled = ASSETS / "demo" / Path(path).name
    hint = f"; the bundled file of that name is {bundled} (or leave the model out for the demo model)"
    return MfssdError(f"model not found: {path}{hint if bundled.is_file() else ''}")


def demo_model() -> Path:
    """The bundled demo checkpoint: the default model of mfssd-export, -prune, -bench and -demo (they need
    torch anyway); Detector(), mfssd-detect and mfssd-eval go through default_model()."""
    if not DEMO_MODEL.is_file():
        raise MfssdError(f"the bundled demo model is missing ({DEMO_MODEL}); reinstall mfssd-deploy or pass --model")
    return DEMO_MODEL


def demo_onnx(int8: bool = False) -> Path:
    """The demo model's bundled end2end ONNX export (FP32, or INT8 Q/DQ s8): runs without torch."""
    path = DEMO_ONNX_INT8 if int8 else DEMO_ONNX
    if not path.is_file():
        raise MfssdError(f"the bundled demo ONNX model is missing ({path}); reinstall mfssd-deploy or pass --model")
    return path


def torch_importable() -> bool:
    try:
        importlib.import_module("torch")
    except ImportError:
        return False
    return True


def default_model() -> Path:
    """What Detector(), mfssd-detect and mfssd-eval run when no model is given: the checkpoint where torch
    imports (every option works on it, e.g. another NMS IoU), else its FP32 end2end ONNX export, so the
    lean install runs out of the box (same detections: the export's parity check, and a test)."""
    return demo_model() if torch_importable() else demo_onnx()


def pruned_demo_model() -> Path:
    """The demo model after network slimming (sparse training, pruning, fine-tuning)."""
    if not PRUNED_DEMO_MODEL.is_file():
        raise MfssdError(f"the bundled pruned demo model is missing ({PRUNED_DEMO_MODEL}); reinstall mfssd-deploy")
    return PRUNED_DEMO_MODEL


def sample_images() -> list[Path]:
    return sorted(SAMPLES.glob("*.jpg"))
