"""Network slimming's sparsity: L1 on BatchNorm scales, as a sub-gradient added after backward."""

from __future__ import annotations

import torch
from torch import nn


def bn_gammas(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.weight is not None]


@torch.no_grad()
def add_l1_subgradient(model: nn.Module, strength: float) -> None:
    """grad(gamma) += s * sign(gamma) for every BN scale: the paper's (and Liu et al.'s) L1 penalty."""
    for g in bn_gammas(model):
        if g.grad is not None:
            g.grad.add_(torch.sign(g), alpha=strength)
