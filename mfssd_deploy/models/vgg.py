"""SSD's reduced VGG16 backbone, widths from the config."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mfssd_deploy.models.layers import ConvBlock

# Stages of 3x3 convs; a 2x2/2 max-pool follows each stage but the last (pool3 uses ceil_mode,
# so 75 -> 38 as in SSD); after conv5_3: pool5 (3x3, stride 1, pad 1), fc6, fc7.
STAGES: tuple[tuple[str, ...], ...] = (
    ("conv1_1", "conv1_2"),
    ("conv2_1", "conv2_2"),
    ("conv3_1", "conv3_2", "conv3_3"),
    ("conv4_1", "conv4_2", "conv4_3"),
    ("conv5_1", "conv5_2", "conv5_3"),
)


class ReducedVGG16(nn.Module):
    """Returns the maps the necks use: relu4_3 (stride 8), relu5_3 and fc7 (stride 16).

    `bn=True` makes each of the 13 VGG convs bias-free + BatchNorm (MFSSD-BN); fc6/fc7 never
    have BN and keep their bias.
    """

    def __init__(self, widths: dict[str, int], bn: bool = False) -> None:
        super().__init__()
        cin = 3
        for stage in STAGES:
            for name in stage:
                self.add_module(name, ConvBlock(cin, widths[name], 3, padding=1, bn=bn))
                cin = widths[name]
        self.fc6 = ConvBlock(cin, widths["fc6"], 3, padding=6, dilation=6)
        self.fc7 = ConvBlock(widths["fc6"], widths["fc7"], 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats: list[torch.Tensor] = []
        for s, stage in enumerate(STAGES):
            if s > 0:
                x = F.max_pool2d(x, 2, 2, ceil_mode=(s == 3))
            for name in stage:
                x = getattr(self, name)(x)
            feats.append(x)
        conv4_3, conv5_3 = feats[3], feats[4]
        x = F.max_pool2d(conv5_3, 3, 1, 1)
        fc7 = self.fc7(self.fc6(x))
        return conv4_3, conv5_3, fc7
