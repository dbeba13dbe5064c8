"""SSD augmentation with torchvision transforms.v2 (photometric distortion, zoom out, IoU crop, flip)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2 as T


class _IfBoxes(torch.nn.Module):
    """Apply a box-driven transform only when the sample has boxes (RandomIoUCrop needs some)."""

    def __init__(self, transform: torch.nn.Module) -> None:
        super().__init__()
        self.transform = transform

    def forward(self, image: Any, target: dict[str, Any]) -> Any:
        if target["boxes"].shape[0] == 0:
            return image, target
        return self.transform(image, target)


def train_transforms(
    size: int, mean: Sequence[float], std: Sequence[float], zoom_out: float = 4.0, hflip: float = 0.5
) -> T.Compose:
    """The SSD recipe. `zoom_out` is the largest canvas side factor (SSD: 4); 1 turns zoom-out off."""
    fill = {tv_tensors.Image: tuple(round(m * 255) for m in mean), "others": 0}
    steps: list[torch.nn.Module] = [T.RandomPhotometricDistort(p=0.5)]
    if zoom_out > 1:
        steps.append(T.RandomZoomOut(fill=fill, side_range=(1.0, zoom_out), p=0.5))
    steps += [
        _IfBoxes(T.RandomIoUCrop()),
        T.RandomHorizontalFlip(hflip),
        # No antialias: samples like cv2.INTER_LINEAR, which inference uses.
        T.Resize((size, size), antialias=False),
        T.SanitizeBoundingBoxes(min_size=1.0),
        T.ToDtype(torch.float32, scale=True),
        T.Normalize(list(mean), list(std)),
    ]
    return T.Compose(steps)


def eval_transforms(size: int, mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    return T.Compose(
        [
            T.Resize((size, size), antialias=False),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(list(mean), list(std)),
        ]
    )
