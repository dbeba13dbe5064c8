"""Model facts beside speed: parameters, multiply-adds (measured by hooks on a real forward), size."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Complexity:
    params: int
    macs: int  # multiply-adds of convs and linears for one image
    size_mb: float  # FP32 parameters, MiB (how the paper counts 128.6 MB for MFSSD)

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def gflops(self) -> float:
        return 2 * self.macs / 1e9


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def conv_macs(forward: Callable[[torch.Tensor], Any], model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of `model`'s convs and linears while `forward(x)` runs (hooks on a real forward)."""
    macs = 0

    def hook(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
            macs += out.numel() * k
        elif isinstance(m, nn.Linear):
            macs += out.numel() * m.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    was_training = model.training
    try:
        model.eval()
        forward(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return macs


@torch.no_grad()
def measure(model: nn.Module, input_size: int | tuple[int, int] = 300) -> Complexity:
    """Parameters and conv multiply-adds of one image of `input_size` (a side, or (width, height))."""
    device = next(model.parameters()).device
    w, h = (input_size, input_size) if isinstance(input_size, int) else input_size
    macs = conv_macs(model, model, torch.zeros(1, 3, h, w, device=device))
    params = count_params(model)
    return Complexity(params=params, macs=macs, size_mb=params * 4 / 2**20)
