"""AP on hand-made cases worked out here, and AP50 against pycocotools on random detections."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mfssd_deploy.evaluation.voc import class_ap, class_pr, voc_ap

A = [0.0, 0.0, 10.0, 10.0]
B = [20.0, 20.0, 30.0, 30.0]
C = [0.0, 0.0, 20.0, 20.0]


def dets(*rows: tuple[list[float], float]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([r[0] for r in rows]).reshape(-1, 4), np.array([r[1] for r in rows])


def test_difficult_duplicate_and_miss() -> None:
    # Image 0: GT A, difficult GT B. Image 1: GT C.
    gts = [(np.array([A, B]), np.array([False, True])), (np.array([C]), np.array([False]))]
    d = [
        dets((A, 0.9), ([0.5, 0.0, 10.5, 10.0], 0.8), (B, 0.7), ([50.0, 50.0, 60.0, 60.0], 0.6)),
        dets((C, 0.5)),
    ]
    # Ranked: TP, FP (duplicate), ignored (difficult), FP (miss), TP
    # -> recall .5 .5 .5 1, precision 1 .5 .33 .5
    ap07, ap, npos = class_ap(d, gts)
    assert npos == 2
    assert ap07 == pytest.approx((6 * 1.0 + 5 * 0.5) / 11)  # t = 0..0.5 -> 1; t = 0.6..1 -> 0.5
    assert ap == pytest.approx(0.5 * 1.0 + 0.5 * 0.5)


def test_eleven_point_vs_all_point_differ() -> None:
    # One GT found at rank 2 of 2: recall [0, 1], precision [0, .5]
    gts = [(np.array([A]), np.array([False]))]
    d = [dets(([40.0, 40.0, 50.0, 50.0], 0.9), (A, 0.8))]
    ap07, ap, _ = class_ap(d, gts)
    assert ap07 == pytest.approx(0.5) and ap == pytest.approx(0.5)
    # Two GTs, the first found at rank 1, the second never: recall [.5], precision [1]
    gts2 = [(np.array([A, B]), np.array([False, False]))]
    ap07, ap, _ = class_ap([dets((A, 0.9))], gts2)
    assert ap07 == pytest.approx(6 / 11) and ap == pytest.approx(0.5)


def test_iou_must_exceed_half() -> None:
    gts = [(np.array([[0.0, 0.0, 10.0, 10.0]]), np.array([False]))]
    exactly_half = [0.0, 0.0, 10.0, 5.0]  # IoU = 50 / 100 = 0.5
    assert class_ap([dets((exactly_half, 0.9))], gts)[0] == 0.0
    just_over = [0.0, 0.0, 10.0, 5.01]
    assert class_ap([dets((just_over, 0.9))], gts)[0] == pytest.approx(1.0)


def test_no_gt_is_nan_and_no_detection_is_zero() -> None:
    ap07, ap, npos = class_ap([dets((A, 0.9))], [(np.zeros((0, 4)), np.zeros(0, bool))])
    assert math.isnan(ap07) and math.isnan(ap) and npos == 0
    ap07, ap, _ = class_ap([dets()], [(np.array([A]), np.array([False]))])
    assert ap07 == 0.0 and ap == 0.0


def test_voc_ap_formula() -> None:
    rec, prec = np.array([0.2, 0.4, 0.4, 0.8]), np.array([1.0, 1.0, 0.5, 0.6])
    # 11-point: t=0..0.4 -> 1 (5 points); t=0.5..0.8 -> 0.6 (4 points); t=0.9, 1.0 -> 0
    assert voc_ap(rec, prec, True) == pytest.approx((5 + 4 * 0.6) / 11)
    # all-point: 0.4 * 1 + 0.4 * 0.6
    assert voc_ap(rec, prec, False) == pytest.approx(0.4 + 0.24)


def coco_101(recall: np.ndarray, precision: np.ndarray) -> float:
    """COCO's 101-point interpolation, written from its definition."""
    if recall.size == 0:
        return 0.0
    env = np.maximum.accumulate(precision[::-1])[::-1]
    points = np.linspace(0, 1, 101)
    idx = np.searchsorted(recall, points, side="left")
    return float(np.mean([env[i] if i < len(env) else 0.0 for i in idx]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matching_agrees_with_pycocotools_ap50(seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_images, num_classes = 12, 3
    images, anns, results = [], [], []
    gts: dict[int, list] = {c: [] for c in range(num_classes)}
    dts: dict[int, list] = {c: [] for c in range(num_classes)}
    for i in range(num_images):
        images.append({"id": i + 1, "width": 500, "height": 500})
        # Non-overlapping GTs on a grid, so VOC's and COCO's matching rules coincide.
        cells = rng.choice(25, size=int(rng.integers(1, 6)), replace=False)
        per_class_gt = {c: [] for c in range(num_classes)}
        per_class_dt = {c: ([], []) for c in range(num_classes)}
        for cell in cells:
            x, y = (cell % 5) * 100 + 10, (cell // 5) * 100 + 10
            w, h = rng.uniform(30, 80, 2)
            c = int(rng.integers(num_classes))
            box = [x, y, x + w, y + h]
            per_class_gt[c].append(box)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": c + 1,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
            for _ in range(int(rng.integers(0, 3))):  # jittered detections: some TP, some duplicates, some FP
                jit = rng.normal(0, 8, 4)
                db = [box[0] + jit[0], box[1] + jit[1], box[2] + jit[2], box[3] + jit[3]]
                db[2], db[3] = max(db[2], db[0] + 1), max(db[3], db[1] + 1)  # COCO ignores degenerate boxes
                dc = c if rng.random() < 0.8 else int(rng.integers(num_classes))
                s = float(rng.random())
                per_class_dt[dc][0].append(db)
                per_class_dt[dc][1].append(s)
                results.append(
                    {
                        "image_id": i + 1,
                        "category_id": dc + 1,
                        "score": s,
                        "bbox": [db[0], db[1], db[2] - db[0], db[3] - db[1]],
                    }
                )
        for c in range(num_classes):
            gts[c].append((np.array(per_class_gt[c]).reshape(-1, 4), np.zeros(len(per_class_gt[c]), bool)))
            dts[c].append((np.array(per_class_dt[c][0]).reshape(-1, 4), np.array(per_class_dt[c][1])))
    ours = []
    for c in range(num_classes):
        rec, prec, npos = class_pr(dts[c], gts[c])
        if npos:
            ours.append(coco_101(rec, prec))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {
            "images": images,
            "annotations": anns,
            "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)],
        }
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.params.areaRng = [[0, 1e10]] * 4  # one area range: no size filtering
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert float(np.mean(ours)) == pytest.approx(ev.stats[1], abs=1e-9)
