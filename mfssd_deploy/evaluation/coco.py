"""COCO AP / AP50 / AP75 / APs / APm / APl and AR through pycocotools, on the validated records."""

from __future__ import annotations

import contextlib
import importlib
import io
from typing import Any

import numpy as np

from mfssd_deploy.data.sources import Source
from mfssd_deploy.errors import require

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
# AI-TOD's size buckets (tiny-object detection), by the square root of the box area, in pixels: very tiny
# 2-8, tiny 8-16, small 16-32, and everything above 32 (AI-TOD's "medium" and larger), beside COCO's S/M/L.
AITOD_BUCKETS: dict[str, tuple[float, float]] = {"APvt": (2, 8), "APt": (8, 16), "APs16": (16, 32), "APm32": (32, 1e5)}


def coco_available() -> bool:
    """Whether pycocotools imports (the [train] extra; the lean install has none)."""
    try:
        importlib.import_module("pycocotools.cocoeval")
    except ImportError:
        return False
    return True


def gt_dict(source: Source) -> dict[str, Any]:
    """The COCO ground truth of the validated records: the VOC metric and this one score the same boxes,
    and a malformed annotation the loader skipped reaches neither (the original JSON is never read here).

    COCO semantics are kept: crowd regions are iscrowd annotations (pycocotools ignores detections on
    them), each box keeps the file's "area" (the segment area in COCO 2017, what APs/APm/APl bin by), and
    VOC difficult objects become iscrowd, so detections on them are ignored like the VOC rule."""
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []

    def add(image_id: int, box: np.ndarray, label: int, area: float, crowd: bool) -> None:
        w, h = float(box[2] - box[0]), float(box[3] - box[1])
        anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": label,
                     "bbox": [float(box[0]), float(box[1]), w, h],
                     "area": w * h if np.isnan(area) else area, "iscrowd": int(crowd)})  # fmt: skip

    for r in source.records:
        images.append({"id": r.image_id, "width": r.width, "height": r.height, "file_name": r.path.name})
        areas = r.areas if r.areas is not None else np.full(len(r.boxes), np.nan)
        for b, lab, dif, area in zip(r.boxes, r.labels, r.difficult, areas, strict=True):
            add(r.image_id, b, int(lab), float(area), bool(dif))
        for b, lab, area in zip(r.crowd_boxes, r.crowd_labels, r.crowd_areas, strict=True):
            add(r.image_id, b, int(lab), float(area), True)
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(source.class_names)]
    return {"images": images, "annotations": anns, "categories": cats}


def _mean_valid(a: np.ndarray) -> float:
    return float(a[a > -1].mean()) if (a > -1).any() else -1.0


def _stats_at(ev: Any, max_det: int) -> list[float]:
    """pycocotools' 12 summary numbers, with every AP and the last ARs at maxDets=max_det."""
    p, prec, rec = ev.params, ev.eval["precision"], ev.eval["recall"]  # [T,R,K,A,M], [T,K,A,M]
    m = list(p.maxDets).index(max_det)
    t50, t75 = (int(np.where(np.isclose(p.iouThrs, v))[0][0]) for v in (0.5, 0.75))
    ap = [_mean_valid(prec[:, :, :, 0, m]), _mean_valid(prec[t50, :, :, 0, m]), _mean_valid(prec[t75, :, :, 0, m]),
          *(_mean_valid(prec[:, :, :, a, m]) for a in (1, 2, 3))]  # fmt: skip
    ar = [_mean_valid(rec[:, :, 0, list(p.maxDets).index(d)]) for d in (1, 10)] + [_mean_valid(rec[:, :, 0, m])]
    ar += [_mean_valid(rec[:, :, a, m]) for a in (1, 2, 3)]
    return ap + ar


def coco_metrics(
    source: Source, detections: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]], max_dets: int | None = None
) -> dict[str, float]:
    """detections: image_id -> (boxes xyxy px, scores, 0-based labels). COCO's 12 numbers and the AI-TOD
    buckets; `max_dets` replaces COCO's 100 detections per image (AR100 is then AR at max_dets)."""
    coco_mod = require("pycocotools.coco", "train", "COCO evaluation")
    eval_mod = require("pycocotools.cocoeval", "train", "COCO evaluation")
    with contextlib.redirect_stdout(io.StringIO()):
        gt = coco_mod.COCO()
        gt.dataset = gt_dict(source)
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
        return dict.fromkeys((*STAT_NAMES, *AITOD_BUCKETS), 0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = eval_mod.COCOeval(gt, dt, "bbox")
        ev.params.imgIds = sorted(detections)
        if max_dets is not None:
            ev.params.maxDets = [1, 10, int(max_dets)]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        # summarize() reads AP at a hard-coded maxDets=100 (-1 when 100 is not in the list): with another
        # max_dets the 12 numbers are read off the same accumulated arrays at that maxDets instead
        stats = ev.stats if max_dets is None else _stats_at(ev, int(max_dets))
        out = {k: float(v) for k, v in zip(STAT_NAMES, stats, strict=True)}
        tod = eval_mod.COCOeval(gt, dt, "bbox")  # the same matching, AI-TOD's area ranges
        tod.params.imgIds = ev.params.imgIds
        tod.params.maxDets = ev.params.maxDets
        tod.params.areaRng = [[0, 1e10], *([lo**2, hi**2] for lo, hi in AITOD_BUCKETS.values())]
        tod.params.areaRngLbl = ["all", *AITOD_BUCKETS]
        tod.evaluate()
        tod.accumulate()
    for a, key in enumerate(AITOD_BUCKETS, 1):  # what summarize() computes for an area range
        p = tod.eval["precision"][:, :, :, a, -1]
        out[key] = float(p[p > -1].mean()) if (p > -1).any() else -1.0
    return out
