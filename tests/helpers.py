"""Shared test helpers."""

from __future__ import annotations

import numpy as np

from mfssd_deploy.exporters.parity import box_iou_np
from mfssd_deploy.results import Result


def same(a: list[Result], b: list[Result], iou: float = 0.99, tol: float = 1e-4) -> None:
    assert [len(r) for r in a] == [len(r) for r in b]
    for ra, rb in zip(a, b, strict=True):
        if not len(ra):
            continue
        ious = box_iou_np(ra.boxes.astype(np.float64), rb.boxes.astype(np.float64))
        for i in range(len(ra)):
            cand = np.nonzero(rb.labels == ra.labels[i])[0]
            j = cand[np.argmax(ious[i, cand])]
            assert ious[i, j] >= iou and abs(ra.scores[i] - rb.scores[j]) <= tol
