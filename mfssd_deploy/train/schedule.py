"""The paper's schedule shape, scaled to any length: linear warmup, then x0.1 steps.

Paper: 5 warmup epochs, steps at 150/200/250 of 300 epochs -> fractions 1/60, 1/2, 2/3, 5/6.
"""

from __future__ import annotations

import bisect

PAPER_WARMUP = 5 / 300
PAPER_MILESTONES = (150 / 300, 200 / 300, 250 / 300)


def lr_factor(
    step: int,
    total_steps: int,
    warmup: float = PAPER_WARMUP,
    milestones: tuple[float, ...] = PAPER_MILESTONES,
    gamma: float = 0.1,
    warmup_start: float = 0.001,
) -> float:
    """Multiplier of the base LR at optimiser step `step` of `total_steps` (fractions of the run)."""
    warm = max(1, round(warmup * total_steps))
    if step < warm:
        return warmup_start + (1 - warmup_start) * step / warm
    passed = bisect.bisect_right([round(m * total_steps) for m in milestones], step)
    return float(gamma**passed)
