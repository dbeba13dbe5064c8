"""Full-size MFSSD-BN artifacts for speed: random weights, optionally pruned like the demo model.

The peers are full-size 300x300 VGG16 detectors, so speed ratios use the full-size model, not the
narrow demo model. Speed does not depend on the weights, only on the layer widths, so the weights
are random (seeded). The pruned variant keeps, layer by layer, the same fraction of channels that
the accuracy-checked pruned demo model kept (network slimming's per-layer choice, scaled to full
width): the structure whose accuracy was measured, at the size whose speed is measured.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from mfssd_deploy.config import BASE_WIDTHS, ModelConfig, make_config

VARIANT = "mfssd_bn"


def pruned_widths_like(demo_unpruned: dict[str, int], demo_pruned: dict[str, int], scale: float = 1.0,
                       multiple: int = 1) -> dict[str, int]:  # fmt: skip
    """Full-size widths keeping each layer's kept fraction of the pruned demo model (times `scale`),
    rounded to a multiple of `multiple` channels."""
    base = BASE_WIDTHS[VARIANT]
    missing = set(base) - set(demo_unpruned) | set(base) - set(demo_pruned)
    if missing:
        raise ValueError(f"demo widths lack layers {sorted(missing)}")

    def width(k: str) -> int:
        w = round(base[k] * scale * demo_pruned[k] / demo_unpruned[k] / multiple) * multiple
        return min(base[k], max(multiple, w))

    return {k: width(k) for k in base}


def _params(cfg: ModelConfig) -> int:
    from mfssd_deploy.models import build_from_config

    return sum(p.numel() for p in build_from_config(cfg).parameters())


def pruned_config_like(demo_unpruned: ModelConfig, demo_pruned: ModelConfig, num_classes: int = 21,
                       multiple: int = 1) -> ModelConfig:  # fmt: skip
    """Full-size config pruned like the demo model, at the demo's parameter ratio.

    The per-layer kept fractions carry over; the heads (kept whole, sized by the class count) make
    the full-size ratio come out slightly different, so one common factor on the fractions is
    bisected until the full-size parameter ratio matches the demo's (to about 0.1%).
    """
    target = _params(demo_pruned) / _params(demo_unpruned)
    full = _params(fullsize_config(num_classes))
    lo, hi = 0.8, 1.25
    for _ in range(12):
        mid = (lo + hi) / 2
        ratio = _params(
            fullsize_config(num_classes, pruned_widths_like(demo_unpruned.widths, demo_pruned.widths, mid, multiple))
        )
        lo, hi = (mid, hi) if ratio / full < target else (lo, mid)
    return fullsize_config(
        num_classes, pruned_widths_like(demo_unpruned.widths, demo_pruned.widths, (lo + hi) / 2, multiple)
    )


def fullsize_config(num_classes: int = 21, widths: dict[str, int] | None = None) -> ModelConfig:
    cfg = make_config(VARIANT, num_classes)
    return cfg.with_widths(widths) if widths else cfg


@dataclass(frozen=True)
class FullSizeModel:
    """A full-size checkpoint with random weights in the cache (written once per config)."""

    label: str
    checkpoint: Path
    config: ModelConfig


def fullsize_checkpoint(cache: Path, label: str, cfg: ModelConfig, seed: int = 0) -> FullSizeModel:
    import torch

    from mfssd_deploy.checkpoint import save_checkpoint
    from mfssd_deploy.models import build_from_config

    key = hashlib.sha256(json.dumps([cfg.to_dict(), seed], sort_keys=True).encode()).hexdigest()[:10]
    path = cache / f"{label}-{key}.pt"
    if not path.is_file():
        torch.manual_seed(seed)
        model = build_from_config(cfg).eval()
        cache.mkdir(parents=True, exist_ok=True)
        save_checkpoint(path, model, config=cfg, meta={"weights": f"random (torch.manual_seed({seed})), speed only"})
    return FullSizeModel(label, path, cfg)
