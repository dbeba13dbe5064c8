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


def gamma_summary(model: nn.Module) -> dict[str, float]:
    """How sparse the BN scales are: the numbers slimming decisions rest on."""
    g = torch.cat([w.detach().abs().flatten().float().cpu() for w in bn_gammas(model)])
    return {
        "count": float(g.numel()),
        "median": float(g.median()),
        "below_1e-2": float((g < 1e-2).float().mean()),
        "below_1e-3": float((g < 1e-3).float().mean()),
    }


def plot_gammas(model: nn.Module, path: str, title: str) -> None:
    """Histogram of |gamma| over every BN layer (log scale), written atomically as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from mfssd_deploy.fileio import atomic_path

    g = torch.cat([w.detach().abs().flatten().float().cpu() for w in bn_gammas(model)]).numpy()
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    bins = np.logspace(-6, max(1.0, float(np.log10(g.max() + 1e-12)) + 0.1), 60)
    ax.hist(np.clip(g, 1e-6, None), bins=bins.tolist(), color="#3b7dd8")
    ax.set_xscale("log")
    ax.set_xlabel("|BN gamma| (all BatchNorm layers)")
    ax.set_ylabel("channels")
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
