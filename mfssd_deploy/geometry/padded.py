"""Padded detections (the end2end / EfficientNMS convention) in numpy: what every layout hands over.

num_dets [B,1], boxes [B,K,4], scores [B,K], classes [B,K]; rows past num_dets are padding. The
raw layout's decode + NMS produces the same tuple, so the Detector, the exporter's parity check and
the evaluation read detections one way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mfssd_deploy.config import NMSConfig


def unpack_end2end(outputs: Sequence[Any], nms: NMSConfig) -> tuple[np.ndarray, ...]:
    """An end2end graph's outputs with a raised score threshold and a lowered max_det applied.

    Exact, not an approximation: NMS never lets a lower score suppress a higher one, so dropping the
    detections below `nms.conf_thresh` after NMS equals running NMS at that threshold."""
    num, boxes, scores, classes = (np.asarray(o) for o in outputs[:4])
    keep = (scores >= nms.conf_thresh) & (np.arange(scores.shape[1])[None, :] < num.reshape(-1, 1))
    keep[:, nms.max_det :] = False
    return keep.sum(1, keepdims=True).astype(np.int32), boxes, scores, classes
