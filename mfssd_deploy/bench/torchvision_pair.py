"""The cleanest peer there is: torchvision's ssd300_vgg16 and this project's import of the same weights.

`mfssd-bench --models torchvision-import` saves the weights of a seeded `ssd300_vgg16(weights=None)` once, as
its users save theirs (a state_dict), imports them with mfssd-import's code and exports the import like
any checkpoint; torchvision's own model on the same weights (its transform, box coder and
post-processing, eager) is the peer. No trained torchvision weights can be downloaded here: with random
weights every class scores about 1/K and both sides would work at their top-k caps, so the background
bias is raised until a few dozen candidates of an image pass the 0.01 threshold, and the comparison is
about the detections. Before any timing, every row of the import is held to the peer's detections on
the timing images: the same detections at FP32, the agreement F1 at reduced precision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

GROUP = "torchvision-import"
PEER = "torchvision-same-weights"
NUM_CLASSES = 21  # VOC's 20 and background: imported with --classes voc
SEED = 0
CANDIDATES = 40  # about this many (prior, class) pairs of the calibration image pass the 0.01 threshold
# FP32 rows against torchvision: the import resizes in float as torchvision does (ModelConfig.resize), so
# the same detections are the bar: IoU >= 0.999, scores within 1e-4 (measured on the bundled
# samples, none of them 300x300: IoU >= 0.99999, 3e-6).
SAME_IOU, SAME_SCORE = 0.999, 1e-4


def seeded_ssd300(image: np.ndarray, num_classes: int = NUM_CLASSES, seed: int = SEED,
                  candidates: int = CANDIDATES) -> Any:  # fmt: skip
    """torchvision's ssd300_vgg16 with seeded weights, its background bias raised so that about
    `candidates` (prior, class) pairs of `image` (BGR uint8) score above 0.01."""
    import torch
    from torchvision.models.detection import ssd300_vgg16

    from mfssd_deploy.bench.peers import rgb_tensor

    torch.manual_seed(seed)
    tv = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=num_classes).eval()
    with torch.no_grad():
        x = tv.transform([rgb_tensor(image)])[0].tensors
        logits = tv.head(list(tv.backbone(x).values()))["cls_logits"][0]
        margin = (logits[:, 1:].max(1).values - logits[:, 0]).sort(descending=True).values
        shift = float(margin[candidates]) + math.log(1 / 0.01)
        for m in tv.head.classification_head.module_list:
            m.bias[0::num_classes] += shift
    return tv


def same_weights(cache: Path, image: np.ndarray) -> tuple[Path, Path]:
    """The seeded torchvision weights (state_dict file) and their import (checkpoint), made once per cache."""
    import torch

    from mfssd_deploy.fileio import atomic_path
    from mfssd_deploy.importers import import_checkpoint

    stem = cache / f"torchvision-ssd300-seed{SEED}"
    state, ckpt = stem.with_suffix(".pth"), stem.with_suffix(".pt")
    if not state.is_file():
        with atomic_path(state) as tmp:
            torch.save(seeded_ssd300(image).state_dict(), tmp)
    if not ckpt.is_file():
        import_checkpoint(state, ckpt, source="torchvision", classes="voc")
    return state, ckpt


def padded(dets: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, ...]:
    """Per-image (boxes, scores, 0-based classes) as the padded (num_dets, boxes, scores, classes) batch."""
    n = max((len(s) for _, s, _ in dets), default=0)
    num = np.array([len(s) for _, s, _ in dets], np.int64)
    boxes, scores = np.zeros((len(dets), n, 4), np.float32), np.zeros((len(dets), n), np.float32)
    classes = np.full((len(dets), n), -1, np.int64)
    for i, (b, s, c) in enumerate(dets):
        boxes[i, : len(s)], scores[i, : len(s)], classes[i, : len(s)] = b, s, c
    return num, boxes, scores, classes


def hold_to_peer(runners: Sequence[Any], images: Sequence[np.ndarray]) -> None:
    """Each row of the import against torchvision's detections on `images`, written to its facts as
    "vs_torchvision": FP32 rows the same detections (counts, IoU >= SAME_IOU, scores within SAME_SCORE),
    reduced-precision rows the agreement F1 of every detection (score >= 0.01, the NMS threshold)."""
    from mfssd_deploy.exporters.parity import agreement, match_detections

    peer = next((r for r in runners if r.facts.get("peer") == PEER), None)
    if peer is None:
        return
    ref_dets = []
    for d in peer.extra["call"](list(images)):
        ref_dets.append((d["boxes"].cpu().numpy(), d["scores"].cpu().numpy(), d["labels"].cpu().numpy() - 1))
    ref = padded(ref_dets)
    for r in runners:
        if r.facts.get("group") != GROUP or r.detector is None:
            continue
        got = padded([(res.boxes, res.scores, res.labels) for res in r.detector.detect_arrays(list(images))])
        if r.facts.get("precision") == "fp32":
            m = match_detections(got, ref, iou_min=SAME_IOU, score_tol=SAME_SCORE)
            r.facts["vs_torchvision"] = {"same": bool(m["ok"]), "detections": int(sum(m["counts"])),
                                         "detections_torchvision": int(sum(m["counts_ref"])),
                                         "min_iou": m["min_iou"], "max_score_diff": m["max_score_diff"]}  # fmt: skip
        else:
            a = agreement(got, ref, score_min=0.01)
            r.facts["vs_torchvision"] = {"f1": a["f1"], "detections": a["detections"],
                                         "detections_torchvision": a["detections_fp32"]}  # fmt: skip
