"""Evaluate any detector callable on a Source: the same code scores .pt, .onnx and .engine models."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mfssd_deploy.data.sources import Source
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.evaluation.result import ClassAP, EvalResult
from mfssd_deploy.evaluation.voc import class_ap
from mfssd_deploy.runtime.inputs import read_image

log = logging.getLogger("mfssd_deploy.eval")

ImageDetections = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes xyxy px [n,4], scores [n], labels [n] 0-based
Predictor = Callable[[list[np.ndarray]], Sequence[ImageDetections]]  # BGR uint8 images -> one result each


def _batches(n: int, size: int) -> list[range]:
    return [range(i, min(n, i + size)) for i in range(0, n, size)]


def predict_source(
    predict: Predictor,
    source: Source,
    batch_size: int = 8,
    max_images: int | None = None,
    progress: bool = True,
) -> dict[int, ImageDetections]:
    from tqdm import tqdm

    records = source.records[:max_images] if max_images else source.records
    out: dict[int, ImageDetections] = {}
    with tqdm(
        total=len(records), desc=f"eval {source.name}", unit="img", disable=None if progress else True, leave=False
    ) as bar:
        for idx in _batches(len(records), batch_size):
            images, ids = [], []
            for i in idx:
                try:  # the Detector's own reader: the same pixels (EXIF orientation, 16-bit) as detection
                    img = read_image(records[i].path)
                except MfssdError as exc:
                    log.warning("unreadable image skipped in evaluation: %s", exc)
                    continue
                images.append(img)
                ids.append(records[i].image_id)
            if images:
                for image_id, det in zip(ids, predict(images), strict=True):
                    out[image_id] = det
            bar.update(len(idx))
    if not out:
        raise MfssdError(
            f"none of the {len(records)} images of {source.name} could be read (e.g. {records[0].path}); "
            "nothing was scored: fix the image paths or the annotations' file names"
        )
    return out


IGNORE_IOA = 0.5  # a detection at least half inside an ignore region is left out (VisDrone's rule)


def _ioa(dets: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Intersection over the detection's own area, [N, M]."""
    x1 = np.maximum(dets[:, None, 0], regions[None, :, 0])
    y1 = np.maximum(dets[:, None, 1], regions[None, :, 1])
    x2 = np.minimum(dets[:, None, 2], regions[None, :, 2])
    y2 = np.minimum(dets[:, None, 3], regions[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = np.clip(dets[:, 2] - dets[:, 0], 1e-9, None) * np.clip(dets[:, 3] - dets[:, 1], 1e-9, None)
    return inter / area[:, None]


def voc_metrics(source: Source, detections: dict[int, ImageDetections], iou_thresh: float = 0.5) -> EvalResult:
    records = [r for r in source.records if r.image_id in detections]
    per_class: dict[str, ClassAP] = {}
    for c, name in enumerate(source.class_names):
        dets, gts = [], []
        for r in records:
            boxes, scores, labels = detections[r.image_id]
            keep = labels == c
            regions = r.crowd_boxes[r.crowd_labels == c + 1]
            if len(regions) and keep.any():  # detections on an ignore / crowd region count neither way
                keep[keep] = _ioa(boxes[keep], regions).max(1) < IGNORE_IOA
            dets.append((boxes[keep], scores[keep]))
            m = r.labels == c + 1
            gts.append((r.boxes[m], r.difficult[m]))
        ap07, ap, npos = class_ap(dets, gts, iou_thresh)
        per_class[name] = {"ap07": ap07, "ap": ap, "n_gt": npos}
    valid = [v for v in per_class.values() if not math.isnan(v["ap07"])]
    return {
        "voc07_map": float(np.mean([v["ap07"] for v in valid])) if valid else float("nan"),
        "voc_map_all_point": float(np.mean([v["ap"] for v in valid])) if valid else float("nan"),
        "per_class": per_class,
    }


def evaluate(
    predict: Predictor,
    source: Source,
    *,
    class_names: Sequence[str],
    batch_size: int = 8,
    max_images: int | None = None,
    coco: bool = True,
    progress: bool = True,
    max_dets: int | None = None,
) -> EvalResult:
    """VOC07 11-point mAP (+ all-point) per class and overall; COCO AP family (and the AI-TOD buckets)
    when `coco`, with `max_dets` detections per image (None: COCO's 100).

    `class_names` are the predictor's labels (a model's config.class_names): the dataset is matched to
    them by name (Source.aligned_to), so the same names in another order score correctly and other
    names are refused instead of scoring every class as another."""
    source = source.aligned_to(class_names, "the model").require_content("evaluation")
    dets = predict_source(predict, source, batch_size, max_images, progress)
    return score_detections(source, dets, coco, max_dets)


def score_detections(
    source: Source, dets: dict[int, ImageDetections], coco: bool = True, max_dets: int | None = None
) -> EvalResult:
    """VOC07 mAP (+ all-point) and, with `coco`, the COCO AP family of detections keyed by image_id."""
    result = voc_metrics(source, dets)
    if coco:
        from mfssd_deploy.evaluation.coco import coco_metrics

        result["coco"] = coco_metrics(source, dets, max_dets)
        if max_dets is not None:
            result["max_dets"] = int(max_dets)
    result["images"] = len(dets)
    return result


def torch_predictor(
    model: Any,
    device: str = "cpu",
    conf: float | None = None,
    iou: float | None = None,
    max_det: int | None = None,
    channels_last: bool = False,
) -> Predictor:
    """A Predictor over a torch model (settings default to its config's NMS settings)."""
    import torch

    from mfssd_deploy.geometry import Geometry

    geo = Geometry(model.config, model.config.nms.override(conf, iou, max_det))

    @torch.inference_mode()
    def predict(images: list[np.ndarray]) -> list[ImageDetections]:
        x = torch.from_numpy(geo.preprocess(images)).to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        was_training = model.training
        model.eval()
        loc, logits = model(x)
        model.train(was_training)
        found = geo.decode(loc, logits, logits=True).to_list()
        boxes = geo.to_image([b.cpu().numpy() for b, _, _ in found], [img.shape[:2] for img in images])
        return [
            (b, s.cpu().numpy(), c.cpu().numpy().astype(np.int64)) for b, (_, s, c) in zip(boxes, found, strict=True)
        ]

    return predict


def detector_predictor(detector: Any) -> Predictor:
    """A Predictor over a Detector: any artifact (.pt, .onnx, .engine) is scored by the same code."""

    def predict(images: list[np.ndarray]) -> list[ImageDetections]:
        return [(r.boxes, r.scores, r.labels) for r in detector.detect_arrays(images)]

    return predict


def load_coco_results(path: str | os.PathLike[str], source: Source) -> dict[int, ImageDetections]:
    """A COCO results file ([{image_id, category_id, bbox [x,y,w,h], score}, ...]) as detections for
    every image of `source` (images without a line have none). Categories are the source's, sorted by
    id, as the COCO loader numbers them."""
    import json

    p = Path(path)
    try:
        items = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise MfssdError(
            f"{p} is not a readable COCO results JSON ({exc}); write one with examples/folder_to_json.py"
        ) from exc
    if not isinstance(items, list):
        raise MfssdError(f"{p}: a COCO results file is a JSON list of detections")
    cat_ids = _category_ids(source)
    label_of = {cid: i for i, cid in enumerate(cat_ids)}
    per: dict[int, list[tuple[list[float], float, int]]] = {r.image_id: [] for r in source.records}
    for k, d in enumerate(items):
        try:
            image_id, cat, (x, y, w, h), score = d["image_id"], d["category_id"], d["bbox"], float(d["score"])
        except (KeyError, TypeError, ValueError):
            raise MfssdError(f"{p}: item {k} is not a COCO detection (image_id, category_id, bbox, score)") from None
        if image_id not in per:
            raise MfssdError(f"{p}: item {k} has image_id {image_id}, which is not in {source.name}")
        if cat not in label_of:
            raise MfssdError(f"{p}: item {k} has category_id {cat}; {source.name} has {cat_ids}")
        per[image_id].append(([x, y, x + w, y + h], score, label_of[cat]))
    out: dict[int, ImageDetections] = {}
    for image_id, dets in per.items():
        out[image_id] = (
            np.asarray([d[0] for d in dets], np.float32).reshape(-1, 4),
            np.asarray([d[1] for d in dets], np.float32),
            np.asarray([d[2] for d in dets], np.int64),
        )
    return out


def _category_ids(source: Source) -> list[int]:
    if source.coco_json is not None:
        import json

        return sorted(int(c["id"]) for c in json.loads(source.coco_json.read_text())["categories"])
    return list(range(1, len(source.class_names) + 1))  # VOC: ids 1..N in class order (evaluation.coco)
