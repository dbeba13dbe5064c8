"""SSD multibox heads: one loc and one conf 3x3 conv per source map."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MultiBoxHead(nn.Module):
    """Source maps -> loc [B, P, 4] and conf logits [B, P, C], priors ordered level, row, column, box."""

    def __init__(self, in_channels: Sequence[int], boxes_per_location: Sequence[int], num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.loc = nn.ModuleList(
            nn.Conv2d(c, n * 4, 3, padding=1) for c, n in zip(in_channels, boxes_per_location, strict=True)
        )
        self.conf = nn.ModuleList(
            nn.Conv2d(c, n * num_classes, 3, padding=1) for c, n in zip(in_channels, boxes_per_location, strict=True)
        )

    def forward(self, sources: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        b = sources[0].shape[0]
        loc = [m(x).permute(0, 2, 3, 1).reshape(b, -1) for m, x in zip(self.loc, sources, strict=True)]
        conf = [m(x).permute(0, 2, 3, 1).reshape(b, -1) for m, x in zip(self.conf, sources, strict=True)]
        return torch.cat(loc, 1).reshape(b, -1, 4), torch.cat(conf, 1).reshape(b, -1, self.num_classes)
