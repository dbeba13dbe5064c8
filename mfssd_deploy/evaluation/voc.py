"""Pascal VOC AP: the 2007 11-point metric and the 2010+ all-point metric (pure numpy).

TP at IoU > 0.5 with an unmatched non-difficult GT; a detection matched to a difficult GT is neither
TP nor FP; a second detection of the same GT is FP. IoU without VOC's +1 pixel convention.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07: bool = True) -> float:
    if use_07:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = precision[recall >= t - 1e-12]
            ap += (float(p.max()) if p.size else 0.0) / 11.0
        return ap
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def box_iou_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of xyxy boxes a [N,4] and b [M,4] -> [N,M], no +1 pixel convention (numpy: lean runtime)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, np.finfo(np.float64).tiny)


def class_pr(
    detections: Sequence[tuple[np.ndarray, np.ndarray]],
    ground_truth: Sequence[tuple[np.ndarray, np.ndarray]],
    iou_thresh: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, int]:
    """One class. detections[i] = (boxes [n,4], scores [n]) of image i; ground_truth[i] = (boxes [m,4],
    difficult [m]). Returns the recall and precision curves and the number of non-difficult GTs."""
    npos = int(sum((~d.astype(bool)).sum() for _, d in ground_truth))
    img_idx = np.concatenate([np.full(len(s), i) for i, (_, s) in enumerate(detections)] + [np.zeros(0)]).astype(int)
    scores = np.concatenate([s for _, s in detections] + [np.zeros(0)]).astype(np.float64)
    boxes = np.concatenate([b.reshape(-1, 4) for b, _ in detections] + [np.zeros((0, 4))]).astype(np.float64)
    order = np.argsort(-scores, kind="stable")
    used = [np.zeros(len(g), dtype=bool) for g, _ in ground_truth]
    tp = np.zeros(len(order))
    fp = np.zeros(len(order))
    for k, d in enumerate(order):
        gt_boxes, difficult = ground_truth[img_idx[d]]
        if len(gt_boxes) == 0:
            fp[k] = 1
            continue
        ious = box_iou_np(boxes[d : d + 1], gt_boxes.astype(np.float64))[0]
        j = int(np.argmax(ious))
        if ious[j] > iou_thresh:
            if difficult[j]:
                continue
            if not used[img_idx[d]][j]:
                tp[k] = 1
                used[img_idx[d]][j] = True
            else:
                fp[k] = 1
        else:
            fp[k] = 1
    counted = (tp + fp) > 0  # detections on difficult GTs are neither
    tp_c, fp_c = np.cumsum(tp[counted]), np.cumsum(fp[counted])
    recall = tp_c / max(npos, 1)
    precision = tp_c / np.maximum(tp_c + fp_c, np.finfo(np.float64).eps)
    return recall, precision, npos


def class_ap(
    detections: Sequence[tuple[np.ndarray, np.ndarray]],
    ground_truth: Sequence[tuple[np.ndarray, np.ndarray]],
    iou_thresh: float = 0.5,
) -> tuple[float, float, int]:
    """(11-point AP, all-point AP, number of non-difficult GTs) of one class; NaN APs if it has no GT."""
    recall, precision, npos = class_pr(detections, ground_truth, iou_thresh)
    if npos == 0:
        return float("nan"), float("nan"), 0
    return voc_ap(recall, precision, True), voc_ap(recall, precision, False), npos
