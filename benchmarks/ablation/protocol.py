"""The ablation's learning-rate rule, fixed before any accuracy was seen (README.md): each variant trains
with the same gradient-norm clipping at the largest rung of LADDER at which its probe (probe.py) is
stable. Shared by probe.py, which runs the ladder, and run.py, which reads the LR it fixed."""

from __future__ import annotations

from typing import Any

LADDER = (0.025, 0.0125, 0.00625, 0.003125, 0.0015)
CLIP = 35.0  # mmdetection's RetinaNet/FCOS recipe: grad_clip=dict(max_norm=35, norm_type=2)


def stable(row: dict[str, Any]) -> bool:
    """Finite through the probe, and the loss after the first epoch no higher than during it."""
    losses = row.get("losses") or []
    return bool(row["finite"]) and (len(losses) < 2 or losses[-1] <= losses[0])


def describe(row: dict[str, Any]) -> str:
    if not row["finite"]:
        return f"NaN at step {row['diverged_at_step']}"
    first, last = row["losses"][0], row["losses"][-1]
    return f"{'stable' if stable(row) else 'unstable'}: loss {first:.2f} in epoch 1, {last:.2f} after"


def chosen_lr(probes: list[dict[str, Any]], variant: str, clip: float | None) -> float | None:
    """The rule: the largest ladder LR at which the variant's probe was stable (None: at none)."""
    ok = [r["lr"] for r in probes if r["variant"] == variant and r["clip"] == clip and stable(r)]
    return max(ok) if ok else None
