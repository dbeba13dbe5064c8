"""Files shipped inside the package: the demo model, its model card and sample images."""

from __future__ import annotations

from pathlib import Path

from mfssd_deploy.errors import MfssdError

ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_MODEL = ASSETS / "demo" / "mfssd_bn_w025_synth.pt"
DEMO_MODEL_CARD = ASSETS / "demo" / "MODEL_CARD.md"
PRUNED_DEMO_MODEL = ASSETS / "demo" / "mfssd_bn_w025_synth_pruned.pt"
PRUNED_MODEL_CARD = ASSETS / "demo" / "MODEL_CARD_PRUNED.md"
SAMPLES = ASSETS / "samples"


def demo_model() -> Path:
    """The bundled demo checkpoint: the default of every command that takes a model."""
    if not DEMO_MODEL.is_file():
        raise MfssdError(f"the bundled demo model is missing ({DEMO_MODEL}); reinstall mfssd-deploy or pass --model")
    return DEMO_MODEL


def pruned_demo_model() -> Path:
    """The demo model after network slimming (sparse training, pruning, fine-tuning)."""
    if not PRUNED_DEMO_MODEL.is_file():
        raise MfssdError(f"the bundled pruned demo model is missing ({PRUNED_DEMO_MODEL}); reinstall mfssd-deploy")
    return PRUNED_DEMO_MODEL


def sample_images() -> list[Path]:
    return sorted(SAMPLES.glob("*.jpg"))
