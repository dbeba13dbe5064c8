"""Box geometry in torch: conversions, IoU, SSD encode/decode, GT-to-prior matching. Pure functions.

All functions take leading batch dimensions, so the same code serves one image or a batch and runs
on whatever device its inputs are on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Variances = tuple[float, float]


def cxcywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    half = b[..., 2:] / 2
    return torch.cat([b[..., :2] - half, b[..., :2] + half], dim=-1)


def xyxy_to_cxcywh(b: torch.Tensor) -> torch.Tensor:
    return torch.cat([(b[..., :2] + b[..., 2:]) / 2, b[..., 2:] - b[..., :2]], dim=-1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of xyxy boxes a [..., N, 4] and b [..., M, 4] -> [..., N, M] (no +1 pixel convention)."""
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[..., :, None] + area_b[..., None, :] - inter
    return inter / union.clamp(min=torch.finfo(inter.dtype).tiny)


def decode(
    loc: torch.Tensor, priors: torch.Tensor, variances: Variances = (0.1, 0.2), wh_clamp: float | None = None
) -> torch.Tensor:
    """Offsets loc [..., P, 4] against priors [P, 4] (cx, cy, w, h) -> xyxy boxes [..., P, 4]; `wh_clamp`
    bounds loc_wh * variance from above before exp (torchvision's box coder)."""
    cxcy = priors[..., :2] + loc[..., :2] * variances[0] * priors[..., 2:]
    dwh = loc[..., 2:] * variances[1]
    wh = priors[..., 2:] * torch.exp(dwh if wh_clamp is None else dwh.clamp(max=wh_clamp))
    return torch.cat([cxcy - wh / 2, cxcy + wh / 2], dim=-1)


def encode(boxes: torch.Tensor, priors: torch.Tensor, variances: Variances = (0.1, 0.2)) -> torch.Tensor:
    """Inverse of decode: xyxy boxes [..., P, 4] matched to priors [P, 4] -> offsets [..., P, 4]."""
    c = xyxy_to_cxcywh(boxes)
    g_cxcy = (c[..., :2] - priors[..., :2]) / (variances[0] * priors[..., 2:])
    g_wh = torch.log(c[..., 2:] / priors[..., 2:]) / variances[1]
    return torch.cat([g_cxcy, g_wh], dim=-1)


def match(
    gt_boxes: Sequence[torch.Tensor],
    gt_labels: Sequence[torch.Tensor],
    priors: torch.Tensor,
    iou_thresh: float = 0.5,
    variances: Variances = (0.1, 0.2),
) -> tuple[torch.Tensor, torch.Tensor]:
    """SSD matching for a batch: per image xyxy GT boxes [G_i, 4] (normalised) and labels [G_i]
    (1-based; 0 is background) -> loc targets [B, P, 4] and class targets [B, P] (long).

    Each GT's best prior is forced to it (a later GT wins a shared prior, as in the reference
    code); every other prior takes its best GT if IoU >= iou_thresh, else background.
    """
    batch = len(gt_boxes)
    num_priors = priors.shape[0]
    device = priors.device
    g_max = max((int(b.shape[0]) for b in gt_boxes), default=0)
    loc_t = torch.zeros(batch, num_priors, 4, device=device, dtype=priors.dtype)
    conf_t = torch.zeros(batch, num_priors, dtype=torch.long, device=device)
    if g_max == 0:
        return loc_t, conf_t
    boxes = torch.zeros(batch, g_max, 4, device=device, dtype=priors.dtype)
    labels = torch.zeros(batch, g_max, dtype=torch.long, device=device)
    valid = torch.zeros(batch, g_max, dtype=torch.bool, device=device)
    for i, (b, lab) in enumerate(zip(gt_boxes, gt_labels, strict=True)):
        n = int(b.shape[0])
        boxes[i, :n] = b.to(device=device, dtype=priors.dtype)
        labels[i, :n] = lab.to(device)
        valid[i, :n] = True
    iou = box_iou(boxes, cxcywh_to_xyxy(priors))  # [B, G, P]
    iou = torch.where(valid[..., None], iou, torch.full_like(iou, -1.0))
    best_gt_iou, best_gt_idx = iou.max(dim=1)  # [B, P]
    best_prior_idx = iou.argmax(dim=2)  # [B, G]
    rows = torch.arange(batch, device=device)
    for g in range(g_max):
        r = rows[valid[:, g]]
        p = best_prior_idx[r, g]
        best_gt_iou[r, p] = 2.0
        best_gt_idx[r, p] = g
    matched = torch.gather(boxes, 1, best_gt_idx[..., None].expand(-1, -1, 4))  # [B, P, 4]
    conf_t = torch.gather(labels, 1, best_gt_idx)
    conf_t[best_gt_iou < iou_thresh] = 0
    loc_t = encode(matched, priors, variances)
    return loc_t, conf_t
