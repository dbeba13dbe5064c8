"""What an evaluation returns, typed, and the one headline every tool prints from it.

The result is a TypedDict: the dict itself is the documented JSON contract (mfssd-eval --json, the
export report's accuracy, the training log), so typing it changes nothing a reader of that JSON sees.
HEADLINE is the one table of the figures the tools print in one line (mfssd-export --val, mfssd-train's
validation, mfssd-demo; mfssd-eval prints the whole result): a metric computed into the result is printed
everywhere by one entry here.
"""

from __future__ import annotations

import math
from typing import Any, TypedDict


class ClassAP(TypedDict):
    ap07: float  # VOC07 11-point AP@0.5
    ap: float  # all-point AP@0.5
    n_gt: int  # ground-truth boxes (difficult ones left out)


class EvalResult(TypedDict, total=False):
    voc07_map: float
    voc_map_all_point: float
    per_class: dict[str, ClassAP]
    coco: dict[str, float]  # evaluation.coco.STAT_NAMES and the AI-TOD buckets; absent without pycocotools
    max_dets: int  # COCO's maxDets, when not its default 100
    images: int  # images scored
    # what mfssd-eval --json adds: the scored model or results file, the tiling, malformed annotations skipped
    model: str
    detections: str
    tiling: dict[str, Any] | None
    skipped_annotations: int


# (key, label): "voc07_map" reads the result, "coco.APs" its COCO section.
HEADLINE: tuple[tuple[str, str], ...] = (
    ("voc07_map", "mAP@0.5 (VOC07)"),
    ("voc_map_all_point", "all-point"),
    ("coco.AP", "COCO AP"),
    ("coco.AP50", "AP50"),
    ("coco.APs", "APs"),
    ("coco.APm", "APm"),
    ("coco.APl", "APl"),
)


def metric(res: dict[str, Any] | EvalResult, key: str) -> float | None:
    """One figure of a result by its HEADLINE key; None where the result has none (no COCO section)."""
    section, _, name = key.rpartition(".")
    where: Any = res.get(section, {}) if section else res
    v = where.get(name)
    return None if v is None else float(v)


def headline(res: dict[str, Any] | EvalResult) -> str:
    """The figures of HEADLINE a result has: "mAP@0.5 (VOC07) 0.8600, all-point 0.8700, COCO AP 0.7000, ..."."""
    parts = []
    for key, label in HEADLINE:
        v = metric(res, key)
        if v is not None:
            parts.append(f"{label} {'n/a' if math.isnan(v) else f'{v:.4f}'}")
    return ", ".join(parts)
