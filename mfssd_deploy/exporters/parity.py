"""ONNX Runtime vs PyTorch on the same images: raw tensors and end2end detections."""

from __future__ import annotations

from typing import Any

import numpy as np

from mfssd_deploy.evaluation.voc import box_iou_np


def match_detections(
    got: tuple[np.ndarray, ...], ref: tuple[np.ndarray, ...], iou_min: float = 0.99, score_tol: float = 1e-4
) -> dict[str, Any]:
    """Compare padded (num_dets, boxes, scores, classes) batches, order-insensitive within ties.

    Each reference detection is paired with the unused detection of the same class and the highest
    IoU. Returns counts per image, the worst IoU and score difference of the pairs, and `ok`.
    """
    g_n, g_b, g_s, g_c = got
    r_n, r_b, r_s, r_c = ref
    counts_got = [int(v) for v in np.asarray(g_n).reshape(-1)]
    counts_ref = [int(v) for v in np.asarray(r_n).reshape(-1)]
    worst_iou, worst_score, unmatched = 1.0, 0.0, 0
    for i, (ng, nr) in enumerate(zip(counts_got, counts_ref, strict=True)):
        gb, gs, gc = g_b[i, :ng], g_s[i, :ng], g_c[i, :ng]
        used = np.zeros(ng, bool)
        ious = box_iou_np(r_b[i, :nr].astype(np.float64), gb.astype(np.float64)) if ng and nr else None
        for j in np.argsort(-r_s[i, :nr], kind="stable"):
            cand = np.nonzero((gc == r_c[i, j]) & ~used)[0]
            if ious is None or cand.size == 0:
                unmatched += 1
                continue
            k = cand[np.argmax(ious[j, cand])]
            used[k] = True
            worst_iou = min(worst_iou, float(ious[j, k]))
            worst_score = max(worst_score, float(abs(gs[k] - r_s[i, j])))
    ok = counts_got == counts_ref and unmatched == 0 and worst_iou >= iou_min and worst_score <= score_tol
    return {
        "counts": counts_got,
        "counts_ref": counts_ref,
        "unmatched": unmatched,
        "min_iou": worst_iou,
        "max_score_diff": worst_score,
        "ok": ok,
    }


def agreement(
    got: tuple[np.ndarray, ...], ref: tuple[np.ndarray, ...], score_min: float = 0.25, iou_min: float = 0.5
) -> dict[str, Any]:
    """F1 of a reduced-precision model's detections against the FP32 ones, taken as ground truth.

    Only detections scoring >= score_min (what a user would draw) count; a pair is the same class at
    IoU >= iou_min, matched greedily by descending score. Both empty is full agreement (F1 1.0).
    """
    g_n, g_b, g_s, g_c = got
    r_n, r_b, r_s, r_c = ref
    tp = n_got = n_ref = 0
    for i, (ng, nr) in enumerate(zip(np.asarray(g_n).reshape(-1), np.asarray(r_n).reshape(-1), strict=True)):
        gk = np.nonzero(g_s[i, : int(ng)] >= score_min)[0]
        rk = np.nonzero(r_s[i, : int(nr)] >= score_min)[0]
        n_got, n_ref = n_got + gk.size, n_ref + rk.size
        if not gk.size or not rk.size:
            continue
        ious = box_iou_np(g_b[i, gk].astype(np.float64), r_b[i, rk].astype(np.float64))
        used = np.zeros(rk.size, bool)
        for j in np.argsort(-g_s[i, gk], kind="stable"):
            ok = (r_c[i, rk] == g_c[i, gk[j]]) & ~used & (ious[j] >= iou_min)
            if ok.any():
                used[np.argmax(np.where(ok, ious[j], -1.0))] = True
                tp += 1
    f1 = 1.0 if n_got + n_ref == 0 else 2 * tp / (n_got + n_ref)
    return {"f1": f1, "matched": tp, "detections": n_got, "detections_fp32": n_ref, "score_min": score_min}
