"""Batched SSD post-processing in torch: softmax, decode, threshold, per-class NMS, top-k.

Device-agnostic: given CUDA tensors it runs entirely on the GPU (this is the product's GPU NMS);
there is no Python loop over images or classes. The padded output follows the end2end /
EfficientNMS convention (num_dets, det_boxes, det_scores, det_classes), so the raw-layout path
and the end2end ONNX graph hand the Detector the same thing.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torchvision.ops import batched_nms

from mfssd_deploy.config import NMSConfig
from mfssd_deploy.geometry.boxes import Variances, decode

DEFAULT_NMS = NMSConfig()  # frozen: safe as a default argument


class PaddedDetections(NamedTuple):
    """num_dets [B,1] int32; boxes [B,K,4] xyxy in [0,1]-normalised coordinates (not clipped);
    scores [B,K]; classes [B,K] int32, 0-based foreground index. Rows past num_dets are zero."""

    num_dets: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor
    classes: torch.Tensor

    def to_list(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per image (boxes [n,4], scores [n], classes [n]) without padding."""
        counts = self.num_dets[:, 0].tolist()
        return [(self.boxes[i, :n], self.scores[i, :n], self.classes[i, :n]) for i, n in enumerate(counts)]


def postprocess(
    loc: torch.Tensor,
    scores: torch.Tensor,
    priors: torch.Tensor,
    nms: NMSConfig = DEFAULT_NMS,
    variances: Variances = (0.1, 0.2),
    *,
    logits: bool = False,
    cap: bool = True,
) -> PaddedDetections:
    """loc [B,P,4] offsets and scores [B,P,C] (class 0 = background; pass logits=True for raw conf)
    -> the top `max_det` detections per image after per-class NMS, padded.

    Semantics of the reference SSD: for every foreground class keep scores > conf_thresh, NMS per
    class at iou_thresh (IoU > thresh suppresses), then the best max_det per image over all classes.
    Candidates are capped per image at the `pre_nms_topk` best (prior, class) scores, as TensorRT's
    NMS layer and our end2end ONNX graph do (cap=False: no cap, for reference checks).
    """
    conf_thresh, iou_thresh, max_det = nms.conf_thresh, nms.iou_thresh, nms.max_det
    pre_nms_topk = nms.pre_nms_topk if cap else None
    if loc.ndim != 3 or scores.ndim != 3 or loc.shape[:2] != scores.shape[:2]:
        raise ValueError(f"expected loc [B,P,4] and scores [B,P,C], got {tuple(loc.shape)}, {tuple(scores.shape)}")
    if logits:
        scores = scores.float().softmax(dim=-1)
    batch, _, num_classes = scores.shape
    device = loc.device
    boxes = decode(loc.float(), priors.to(device=device, dtype=torch.float32), variances, nms.wh_clamp)  # [B,P,4]
    if nms.clip_before_nms:
        boxes = boxes.clamp(0.0, 1.0)
    fg = scores[..., 1:].float().reshape(batch, -1)  # [B, P*(C-1)], (prior, class) pairs
    if pre_nms_topk is not None and pre_nms_topk < fg.shape[1]:
        top, flat_idx = fg.topk(pre_nms_topk, dim=1)  # [B,K], sorted
    else:
        top, flat_idx = fg, None
    b_idx, k_idx = torch.nonzero(top > conf_thresh, as_tuple=True)
    flat = k_idx if flat_idx is None else flat_idx[b_idx, k_idx]
    p_idx = torch.div(flat, num_classes - 1, rounding_mode="floor")
    c_idx = flat - p_idx * (num_classes - 1)
    cand_boxes = boxes[b_idx, p_idx]
    cand_scores = top[b_idx, k_idx]
    group = b_idx * (num_classes - 1) + c_idx
    keep = batched_nms(cand_boxes, cand_scores, group, iou_thresh)  # sorted by score, descending

    kb = b_idx[keep]
    # Stable sort by image keeps the score order inside each image; rank = position in its image.
    order = torch.sort(kb, stable=True).indices
    keep, kb = keep[order], kb[order]
    counts = torch.bincount(kb, minlength=batch)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(kb.numel(), device=device) - starts[kb]
    sel = rank < max_det
    keep, kb, rank = keep[sel], kb[sel], rank[sel]

    out_boxes = torch.zeros(batch, max_det, 4, device=device, dtype=torch.float32)
    out_scores = torch.zeros(batch, max_det, device=device, dtype=torch.float32)
    out_classes = torch.zeros(batch, max_det, device=device, dtype=torch.int32)
    out_boxes[kb, rank] = cand_boxes[keep]
    out_scores[kb, rank] = cand_scores[keep]
    out_classes[kb, rank] = c_idx[keep].to(torch.int32)
    num_dets = counts.clamp(max=max_det).to(torch.int32)[:, None]
    return PaddedDetections(num_dets, out_boxes, out_scores, out_classes)
