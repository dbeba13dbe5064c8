"""FSSD300, the reference FSSD: fuse conv4_3, fc7 and conv7_2 at 38x38, then a feature pyramid."""

from __future__ import annotations

import torch
from torch import nn

from mfssd_deploy.config import ModelConfig
from mfssd_deploy.models.heads import MultiBoxHead
from mfssd_deploy.models.layers import ConvBlock, upsample_to
from mfssd_deploy.models.vgg import ReducedVGG16

# Pyramid levels: (stride, padding) -> 38, 19, 10, 5, 3, 1 from the 38x38 fused map.
PYRAMID = (("pyr0", 1, 1), ("pyr1", 2, 1), ("pyr2", 2, 1), ("pyr3", 2, 1), ("pyr4", 1, 0), ("pyr5", 1, 0))


def pyramid(cin: int, widths: dict[str, int], bn: bool) -> nn.ModuleDict:
    layers = nn.ModuleDict()
    for name, stride, pad in PYRAMID:
        layers[name] = ConvBlock(cin, widths[name], 3, stride=stride, padding=pad, bn=bn)
        cin = widths[name]
    return layers


def pyramid_forward(layers: nn.ModuleDict, x: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for layer in layers.values():
        x = layer(x)
        out.append(x)
    return out


class FSSD(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        w = config.widths
        self.backbone = ReducedVGG16(w, bn=False)
        # Extras (FSSD reference): 1x1, 3x3 s1 p0 (19 -> 17), 1x1, 3x3 s2 p1 (17 -> 9).
        self.conv6_1 = ConvBlock(w["fc7"], w["conv6_1"], 1)
        self.conv6_2 = ConvBlock(w["conv6_1"], w["conv6_2"], 3)
        self.conv7_1 = ConvBlock(w["conv6_2"], w["conv7_1"], 1)
        self.conv7_2 = ConvBlock(w["conv7_1"], w["conv7_2"], 3, stride=2, padding=1)
        self.fuse_a = ConvBlock(w["conv4_3"], w["fuse_a"], 1)
        self.fuse_b = ConvBlock(w["fc7"], w["fuse_b"], 1)
        self.fuse_c = ConvBlock(w["conv7_2"], w["fuse_c"], 1)
        fused = w["fuse_a"] + w["fuse_b"] + w["fuse_c"]
        self.fuse_bn = nn.BatchNorm2d(fused)
        self.pyramid = pyramid(fused, w, bn=False)
        self.head = MultiBoxHead([w[n] for n, _, _ in PYRAMID], config.priors.boxes_per_location, config.num_classes)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        conv4_3, _, fc7 = self.backbone(images)
        conv7_2 = self.conv7_2(self.conv7_1(self.conv6_2(self.conv6_1(fc7))))
        a = self.fuse_a(conv4_3)
        ac = self.config.upsample_align_corners
        fused = torch.cat([a, upsample_to(self.fuse_b(fc7), a, ac), upsample_to(self.fuse_c(conv7_2), a, ac)], 1)
        return self.head(pyramid_forward(self.pyramid, self.fuse_bn(fused)))
