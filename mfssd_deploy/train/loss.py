"""SSD MultiBox loss: smooth L1 on positives + cross-entropy with 3:1 hard negative mining."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def multibox_loss(
    loc_p: torch.Tensor, conf_p: torch.Tensor, loc_t: torch.Tensor, conf_t: torch.Tensor, neg_pos: int = 3
) -> tuple[torch.Tensor, torch.Tensor]:
    """(localisation, confidence) losses, each divided by the number of positive priors in the batch.

    Negatives are the background priors with the highest confidence loss, `neg_pos` per positive
    in each image.
    """
    loc_p, conf_p = loc_p.float(), conf_p.float()
    batch, num_priors, num_classes = conf_p.shape
    pos = conf_t > 0
    num_pos = pos.sum(1, keepdim=True)
    loss_l = F.smooth_l1_loss(loc_p[pos], loc_t[pos], reduction="sum")
    ce = F.cross_entropy(conf_p.reshape(-1, num_classes), conf_t.reshape(-1), reduction="none").view(batch, -1)
    with torch.no_grad():
        mining = ce.masked_fill(pos, 0.0)
        rank = mining.argsort(1, descending=True).argsort(1)
        neg = rank < (neg_pos * num_pos).clamp(max=num_priors - 1)
    loss_c = ce[pos | neg].sum()
    n = num_pos.sum().clamp(min=1).float()
    return loss_l / n, loss_c / n
