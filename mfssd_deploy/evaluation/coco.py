"""COCO AP / AP50 / AP75 / APs / APm / APl and AR through pycocotools."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

from mfssd_deploy.data.sources import Source
from mfssd_deploy.errors import require

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _gt_dict(source: Source) -> dict[str, Any]:
    """A COCO ground truth built from records (VOC sources). Difficult objects become iscrowd, so
    pycocotools ignores detections on them, like the VOC rule."""
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for r in source.records:
        images.append({"id": r.image_id, "width": r.width, "height": r.height, "file_name": r.path.name})
        for b, lab, dif in zip(r.boxes, r.labels, r.difficult, strict=True):
            w, h = float(b[2] - b[0]), float(b[3] - b[1])
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": r.image_id,
                    "category_id": int(lab),
                    "bbox": [float(b[0]), float(b[1]), w, h],
                    "area": w * h,
                    "iscrowd": int(dif),
                }
            )
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(source.class_names)]
    return {"images": images, "annotations": anns, "categories": cats}


def coco_metrics(source: Source, detections: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """detections: image_id -> (boxes xyxy px, scores, 0-based labels)."""
    coco_mod = require("pycocotools.coco", "train", "COCO evaluation")
    eval_mod = require("pycocotools.cocoeval", "train", "COCO evaluation")
    with contextlib.redirect_stdout(io.StringIO()):
        if source.coco_json is not None:
            gt = coco_mod.COCO(str(source.coco_json))
        else:
            gt = coco_mod.COCO()
            gt.dataset = _gt_dict(source)
            gt.createIndex()
    cat_ids = sorted(gt.getCatIds())
    results = []
    for image_id, (boxes, scores, labels) in detections.items():
        for b, s, lab in zip(boxes, scores, labels, strict=True):
            results.append(
                {
                    "image_id": image_id,
                    "category_id": cat_ids[int(lab)],
                    "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
                    "score": float(s),
                }
            )
    if not results:
        return dict.fromkeys(STAT_NAMES, 0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = eval_mod.COCOeval(gt, dt, "bbox")
        ev.params.imgIds = sorted(detections)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {k: float(v) for k, v in zip(STAT_NAMES, ev.stats, strict=True)}
