"""Inference pre-processing with numpy and OpenCV only (the lean runtime uses it as is).

Training resizes with torchvision bilinear without antialias, which samples like cv2.INTER_LINEAR,
so a model sees the same pixels in training, evaluation and deployment.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def preprocess_batch(
    images: Sequence[np.ndarray],
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    color: str = "rgb",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """BGR uint8 HxWx3 images of any sizes -> one contiguous float32 [B, 3, size, size] array.

    mean/std are on the [0, 1] scale, in the model's colour order.
    """
    n = len(images)
    if out is None or out.shape != (n, 3, size, size):
        out = np.empty((n, 3, size, size), dtype=np.float32)
    m = np.asarray(mean, dtype=np.float32)
    s = np.asarray(std, dtype=np.float32)
    scale = (1.0 / (255.0 * s)).reshape(1, 1, 3)
    shift = (m / s).reshape(1, 1, 3)
    for i, img in enumerate(images):
        r = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
        if color == "rgb":
            r = r[..., ::-1]
        out[i] = (r.astype(np.float32) * scale - shift).transpose(2, 0, 1)
    return out
