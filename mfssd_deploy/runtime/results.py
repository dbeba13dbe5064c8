"""Detections of one image, in original-image pixels (numpy only: part of the lean runtime)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np


@dataclass
class Result:
    """boxes [n,4] xyxy pixels clipped to the image, scores [n], labels [n] (0-based class index)."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: Sequence[str]
    image_shape: tuple[int, int]  # (height, width)
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def names(self) -> list[str]:
        return [self.class_names[int(i)] for i in self.labels]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "image_size": {"height": self.image_shape[0], "width": self.image_shape[1]},
            "detections": [
                {"box": [round(float(v), 2) for v in b], "score": round(float(s), 5), "label": int(c),
                 "class": self.class_names[int(c)]}
                for b, s, c in zip(self.boxes, self.scores, self.labels, strict=True)
            ],
        }  # fmt: skip

    def draw(self, image: np.ndarray, min_score: float = 0.0) -> np.ndarray:
        """An annotated copy of `image` (BGR uint8): one colour per class, label and score."""
        out = image.copy()
        thick = max(1, round(max(out.shape[:2]) / 400))
        for b, s, c in zip(self.boxes, self.scores, self.labels, strict=True):
            if s < min_score:
                continue
            colour = _colour(int(c))
            x1, y1, x2, y2 = (round(float(v)) for v in b)
            cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick, cv2.LINE_AA)
            text = f"{self.class_names[int(c)]} {s:.2f}"
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
            ty = max(y1, th + base)
            tx = max(0, min(x1, out.shape[1] - tw))  # keep the label inside the image
            cv2.rectangle(out, (tx, ty - th - base), (tx + tw, ty), colour, -1)
            cv2.putText(out, text, (tx, ty - base), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        return out


def _colour(i: int) -> tuple[int, int, int]:
    hue = (i * 47) % 180
    bgr = cv2.cvtColor(np.array([[[hue, 200, 220]]], dtype=np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])
