"""A torch Dataset over validated records: (image [3,S,S] normalised, {"boxes" [N,4] in [0,1], "labels"})."""

from __future__ import annotations

import logging
from typing import Any

import cv2
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from mfssd_deploy.data.sources import Record, Source
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.runtime.inputs import read_image

log = logging.getLogger("mfssd_deploy.data")


class DetectionDataset(Dataset[tuple[torch.Tensor, dict[str, torch.Tensor]]]):
    def __init__(self, source: Source, transform: Any, color: str = "rgb") -> None:
        self.source = source
        self.records = source.records
        self.transform = transform
        self.color = color
        self.unreadable = 0

    def __len__(self) -> int:
        return len(self.records)

    def _read(self, rec: Record) -> Any:
        try:  # the package's one reader: the pixels (EXIF orientation, 16-bit) the Detector sees
            img = read_image(rec.path)
        except MfssdError:
            return None
        if self.color == "rgb":
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        return img

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # An unreadable image is reported and replaced by the next one: an epoch never dies on it.
        for k in range(len(self.records)):
            rec = self.records[(i + k) % len(self.records)]
            img = self._read(rec)
            if img is not None:
                break
            self.unreadable += 1
            log.warning("unreadable image skipped: %s (image id %d)", rec.path, rec.image_id)
        else:
            raise RuntimeError("no readable image in the dataset")
        h, w = img.shape[:2]
        image = tv_tensors.Image(torch.from_numpy(img).permute(2, 0, 1))
        boxes = tv_tensors.BoundingBoxes(torch.from_numpy(rec.boxes), format="XYXY", canvas_size=(h, w))
        target = {"boxes": boxes, "labels": torch.from_numpy(rec.labels)}
        image, target = self.transform(image, target)
        size = image.shape[-2:]
        scale = torch.tensor([size[1], size[0], size[1], size[0]], dtype=torch.float32)
        return image.as_subclass(torch.Tensor), {
            "boxes": target["boxes"].as_subclass(torch.Tensor).float() / scale,
            "labels": target["labels"],
        }


def collate(batch: list[tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> tuple[torch.Tensor, list[dict]]:
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]
