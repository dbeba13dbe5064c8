"""SSD300 (VGG16, L2Norm on conv4_3, four extra pairs): the paper's baseline row."""

from __future__ import annotations

import torch
from torch import nn

from mfssd_deploy.config import ModelConfig
from mfssd_deploy.models.heads import MultiBoxHead
from mfssd_deploy.models.layers import ConvBlock, L2Norm
from mfssd_deploy.models.vgg import ReducedVGG16

# (1x1 name, 3x3 name, stride, padding) of each extra pair: 19 -> 10 -> 5 -> 3 -> 1.
EXTRAS = (
    ("conv8_1", "conv8_2", 2, 1),
    ("conv9_1", "conv9_2", 2, 1),
    ("conv10_1", "conv10_2", 1, 0),
    ("conv11_1", "conv11_2", 1, 0),
)


class SSD300(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        w = config.widths
        self.backbone = ReducedVGG16(w, bn=False)
        self.l2norm = L2Norm(w["conv4_3"])
        cin = w["fc7"]
        for one, three, stride, pad in EXTRAS:
            self.add_module(one, ConvBlock(cin, w[one], 1))
            self.add_module(three, ConvBlock(w[one], w[three], 3, stride=stride, padding=pad))
            cin = w[three]
        sources = [w["conv4_3"], w["fc7"], *(w[three] for _, three, _, _ in EXTRAS)]
        self.head = MultiBoxHead(sources, config.priors.boxes_per_location, config.num_classes)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        conv4_3, _, x = self.backbone(images)
        sources = [self.l2norm(conv4_3), x]
        for one, three, _, _ in EXTRAS:
            x = getattr(self, three)(getattr(self, one)(x))
            sources.append(x)
        return self.head(sources)
