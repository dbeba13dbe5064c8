"""The peers every speed figure is compared with, run in the same process on the same images.

1. torchvision `ssd300_vgg16` end to end (its own transform, heads and post-processing): what a
   user would pick instead (weights are irrelevant to speed).
2. Eager PyTorch MFSSD(-BN) with the reference SSD post-processing: per image, per class, a greedy
   NMS loop (as in the original SSD code, which keeps the best 200 per class): the paper's own path.

Both run on the device they are compared on: GPU artifacts against GPU peers, CPU against CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mfssd_deploy.geometry import Geometry
from mfssd_deploy.geometry.boxes import box_iou, decode


def greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float, top_k: int = 200) -> torch.Tensor:
    """Indices kept by greedy NMS over the `top_k` best boxes, highest score first (reference SSD)."""
    order = scores.argsort(descending=True)[:top_k]
    keep: list[int] = []
    while order.numel() > 0:
        i = int(order[0])
        keep.append(i)
        if order.numel() == 1:
            break
        rest = order[1:]
        overlap = box_iou(boxes[i : i + 1], boxes[rest])[0]
        order = rest[overlap <= iou]
    return torch.tensor(keep, dtype=torch.long)


class EagerReferencePeer:
    """Eager PyTorch model + the reference per-image, per-class greedy NMS loop."""

    name = "eager PyTorch + reference NMS loop"

    def __init__(self, model: torch.nn.Module, conf: float = 0.01, iou: float = 0.45, max_det: int = 200,
                 device: str = "cpu") -> None:  # fmt: skip
        from mfssd_deploy.geometry.priors import priors_tensor
        from mfssd_deploy.models import config_of

        self.device = device
        self.model = model.eval().to(device)
        self.cfg = config_of(model)
        self.priors = priors_tensor(self.cfg.priors, device)
        self.conf, self.iou, self.max_det = conf, iou, max_det

    @torch.inference_mode()
    def __call__(self, images: Sequence[np.ndarray]) -> list[list[tuple[int, float, list[float]]]]:
        c = self.cfg
        x = torch.from_numpy(Geometry(c).preprocess(images)).to(self.device)
        loc, logits = self.model(x)
        scores = logits.softmax(-1)
        out = []
        for b in range(x.shape[0]):
            boxes = decode(loc[b], self.priors, c.priors.variances)
            dets: list[tuple[int, float, list[float]]] = []
            for cls in range(1, scores.shape[2]):
                s = scores[b, :, cls]
                mask = s > self.conf
                if not mask.any():
                    continue
                cand_boxes, cand_scores = boxes[mask], s[mask]
                for k in greedy_nms(cand_boxes, cand_scores, self.iou).tolist():
                    dets.append((cls - 1, float(cand_scores[k]), cand_boxes[k].tolist()))
            dets.sort(key=lambda d: -d[1])
            out.append(dets[: self.max_det])
        return out


def rgb_tensor(image: np.ndarray) -> torch.Tensor:
    """A BGR uint8 image as torchvision's detection models take it: RGB float 0..1, CHW."""
    return torch.from_numpy(np.ascontiguousarray(image[..., ::-1])).permute(2, 0, 1).float() / 255


class TorchvisionSSDPeer:
    """torchvision's ssd300_vgg16, end to end on BGR uint8 images: random weights (speed only), or the
    state_dict in `state` (the torchvision-import group's same-weights peer)."""

    name = "torchvision ssd300_vgg16"

    def __init__(self, num_classes: int = 21, device: str = "cpu", state: str | Path | None = None) -> None:
        from torchvision.models.detection import ssd300_vgg16

        self.device = device
        self.model = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=num_classes)
        if state is not None:
            self.model.load_state_dict(torch.load(state, map_location="cpu", weights_only=True))
        self.model.eval().to(device)

    @torch.inference_mode()
    def __call__(self, images: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        out = list(self.model([rgb_tensor(img).to(self.device) for img in images]))
        if self.device != "cpu":
            torch.cuda.synchronize()  # the caller times the call: include the GPU work
        return out
