"""The records every dataset layout reads into: one image's boxes, labels and flags (`Record`), a split
(`Source`), and the checks and counters the readers share. numpy only: evaluation of deployed models
must not need torch. The readers (data.sources: COCO and VOC; data.yolo; data.visdrone) build on it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mfssd_deploy.classes import label_map
from mfssd_deploy.errors import MfssdError

log = logging.getLogger("mfssd_deploy.data")
EDGE_TOLERANCE = 1.0  # px a box may exceed the image (rounding in real annotations); clipped silently


def _no_boxes() -> np.ndarray:
    return np.zeros((0, 4), np.float32)


@dataclass
class Record:
    """One image: xyxy pixel boxes, 1-based labels (0 is background), VOC `difficult` flags.

    COCO crowd regions are kept apart (training never sees them; COCO evaluation ignores detections on
    them), and so is the file's "area" of each box: COCO bins APs/APm/APl by it (the segment area in
    COCO 2017, not the box's), so the ground truth built from these records keeps COCO's semantics.
    """

    path: Path
    image_id: int
    width: int
    height: int
    boxes: np.ndarray  # [N, 4] float32
    labels: np.ndarray  # [N] int64
    difficult: np.ndarray  # [N] bool
    areas: np.ndarray | None = None  # [N] float64, COCO "area" (NaN where the file has none); None: box areas
    crowd_boxes: np.ndarray = field(default_factory=_no_boxes)  # [K, 4] float32, COCO iscrowd regions
    crowd_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [K] int64
    crowd_areas: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))  # [K] float64 (NaN: none)


@dataclass
class Source:
    name: str
    class_names: tuple[str, ...]
    records: list[Record]
    skipped: list[str] = field(default_factory=list)  # one message per malformed annotation
    coco_json: Path | None = None  # the original file when the source is COCO (its sha256, its category ids)

    @property
    def num_classes(self) -> int:
        return len(self.class_names) + 1

    def aligned_to(self, names: Sequence[str], names_of: str) -> Source:
        """This source with its labels renumbered to `names` (a model's classes), matched by name; the same
        names in another order agree, other names are refused (classes.label_map)."""
        names = tuple(names)
        if names == self.class_names:
            return self
        lut = label_map(self.class_names, names, f"dataset {self.name}", names_of)
        records = [replace(r, labels=lut[r.labels], crowd_labels=lut[r.crowd_labels]) for r in self.records]
        return replace(self, class_names=names, records=records)

    def require_content(self, purpose: str, images: bool = True) -> Source:
        """Refuse a split with nothing to learn from or score: no image file where the annotations say
        (when `images` are read), or no usable box at all. Records whose image file is missing are
        dropped with one warning."""
        if not self.records:
            raise MfssdError(f"{self.name} has no images; {purpose} needs at least one annotated image")
        missing = [r for r in self.records if images and not r.path.is_file()]
        if len(missing) == len(self.records):
            raise MfssdError(
                f"none of the {len(self.records)} images of {self.name} exist (e.g. {missing[0].path}); "
                f"{purpose} needs them: put the images there or fix the annotations' file names"
            )
        kept = [r for r in self.records if r.path.is_file()] if missing else self.records
        if missing:
            log.warning("%d of %d images of %s are missing and were left out (e.g. %s)", len(missing),
                        len(self.records), self.name, missing[0].path)  # fmt: skip
        if not any(len(r.boxes) for r in kept):
            why = f"{len(self.skipped)} annotations were skipped, e.g. {self.skipped[0]}" if self.skipped else (
                "the annotations hold no objects")  # fmt: skip
            hint = "; give the class list with --classes FILE or a classes.txt" if "unknown class" in why else ""
            raise MfssdError(f"{self.name} has no usable box ({why}){hint}; {purpose} needs annotated objects")
        return replace(self, records=kept) if missing else self


def _check_box(x1: float, y1: float, x2: float, y2: float, w: int, h: int) -> tuple[list[float] | None, str | None]:
    if not all(np.isfinite([x1, y1, x2, y2])):
        return None, "non-finite coordinates"
    if x2 <= x1 or y2 <= y1:
        return None, f"zero or negative area box {[x1, y1, x2, y2]}"
    t = EDGE_TOLERANCE
    if x1 < -t or y1 < -t or x2 > w + t or y2 > h + t:
        return None, f"box {[round(v, 1) for v in (x1, y1, x2, y2)]} outside the {w}x{h} image"
    return [max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2)], None


def _report(skipped: list[str], source: str, message: str) -> None:
    skipped.append(f"{source}: {message}")
    if len(skipped) <= 20:
        log.warning("skipped %s", skipped[-1])
    elif len(skipped) == 21:
        log.warning("%s: more malformed annotations; the total is reported at the end", source)


def _record(path: Path, image_id: int, w: int, h: int, boxes: list, labels: list, difficult: list) -> Record:
    return Record(
        path=path,
        image_id=image_id,
        width=w,
        height=h,
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        labels=np.asarray(labels, dtype=np.int64),
        difficult=np.asarray(difficult, dtype=bool),
    )
