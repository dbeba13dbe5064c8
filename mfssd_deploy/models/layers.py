"""Building blocks shared by every variant."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ConvBlock(nn.Sequential):
    """Conv (+ BN) (+ ReLU). With BN the conv has no bias: BN's beta takes its place."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        *,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        bn: bool = False,
        relu: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, dilation=dilation, bias=not bn)
        if bn:
            self.bn = nn.BatchNorm2d(cout)
        if relu:
            self.relu = nn.ReLU(inplace=True)


class L2Norm(nn.Module):
    """SSD's channel-wise L2 normalisation with a learned per-channel scale (init 20)."""

    def __init__(self, channels: int, scale: float = 20.0, eps: float = 1e-10) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), scale))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.normalize, as torchvision's SSD: the reference's x.pow(2).sum().sqrt() + eps has an infinite
        # gradient where a location's channels are all zero (a dead ReLU column), and training went NaN
        # within 10 steps at width 0.25; the forward values are the same.
        return F.normalize(x, dim=1, eps=self.eps) * self.weight[None, :, None, None]


def upsample_to(x: torch.Tensor, ref: torch.Tensor, align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize of x to ref's spatial size (size=, not scale_factor: 19 -> 38 and 9 -> 38)."""
    size = (int(ref.shape[-2]), int(ref.shape[-1]))
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


def init_weights(module: nn.Module) -> None:
    """Xavier-uniform convs with zero bias, BN at identity: the SSD reference initialisation."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
