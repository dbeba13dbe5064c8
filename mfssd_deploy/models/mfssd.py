"""MFSSD and MFSSD-BN: the paper's fusion of relu4_3, relu5_3 and fc7 (2:1:1), no FSSD extras."""

from __future__ import annotations

import torch
from torch import nn

from mfssd_deploy.config import ModelConfig
from mfssd_deploy.models.fssd import PYRAMID, pyramid, pyramid_forward
from mfssd_deploy.models.heads import MultiBoxHead
from mfssd_deploy.models.layers import ConvBlock, upsample_to
from mfssd_deploy.models.vgg import ReducedVGG16


class MFSSD(nn.Module):
    """`config.variant == "mfssd_bn"` puts BN in the 13 VGG convs; the neck always has BN."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        w = config.widths
        self.backbone = ReducedVGG16(w, bn=config.variant == "mfssd_bn")
        self.fuse_a = ConvBlock(w["conv4_3"], w["fuse_a"], 1, bn=True)
        self.fuse_b = ConvBlock(w["conv5_3"], w["fuse_b"], 1, bn=True)
        self.fuse_c = ConvBlock(w["fc7"], w["fuse_c"], 1, bn=True)
        fused = w["fuse_a"] + w["fuse_b"] + w["fuse_c"]
        self.fuse_bn = nn.BatchNorm2d(fused)
        self.pyramid = pyramid(fused, w, bn=True)
        self.head = MultiBoxHead([w[n] for n, _, _ in PYRAMID], config.priors.boxes_per_location, config.num_classes)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        conv4_3, conv5_3, fc7 = self.backbone(images)
        a = self.fuse_a(conv4_3)
        ac = self.config.upsample_align_corners
        fused = torch.cat([a, upsample_to(self.fuse_b(conv5_3), a, ac), upsample_to(self.fuse_c(fc7), a, ac)], 1)
        return self.head(pyramid_forward(self.pyramid, self.fuse_bn(fused)))
