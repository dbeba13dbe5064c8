"""VisDrone-DET (the drone small-object benchmark), read into the same records.

    VisDrone2019-DET-<split>/images/*.jpg
    VisDrone2019-DET-<split>/annotations/*.txt   left,top,width,height,score,category,truncation,occlusion

Categories 1-10 are the classes. Category 0 ("ignored regions") and 11 ("others"), and any box whose
score is 0 (the benchmark's "not considered in evaluation"), become ignore regions: evaluation neither
rewards nor punishes detections on them, for every class, as COCO's crowd regions do for theirs, and
training never sees them as objects.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from mfssd_deploy.data.imagesize import image_size
from mfssd_deploy.data.records import Source, _check_box, _record, _report
from mfssd_deploy.errors import MfssdError, MissingSplit

CLASSES = ("pedestrian", "people", "bicycle", "car", "van", "truck", "tricycle", "awning-tricycle", "bus", "motor")
SPLIT_FOLDERS = {"train": ("train",), "val": ("val",), "test": ("test-dev", "test-challenge", "test")}
MAX_DETS = 500  # the benchmark scores up to 500 detections per image


def split_folder(root: Path, split: str) -> Path | None:
    """root itself when it is a *-DET-<split> folder, else its child of that name; None: not VisDrone."""
    names = SPLIT_FOLDERS.get(split, (split,))
    children = sorted(root.glob("*-DET-*")) if root.is_dir() else []
    for name in names:  # in SPLIT_FOLDERS order: "test" is test-dev before test-challenge
        for cand in (root, *children):
            m = re.fullmatch(r".*-DET-(.+)", cand.name)
            if m and m.group(1) == name and (cand / "annotations").is_dir() and (cand / "images").is_dir():
                return cand
    return None


def is_visdrone(root: Path) -> bool:
    return root.is_dir() and any(
        re.fullmatch(r".*-DET-.+", c.name) and (c / "annotations").is_dir() for c in (root, *root.glob("*-DET-*"))
    )


def load_visdrone(root: str | os.PathLike[str], split: str, classes: str | os.PathLike[str] | None = None) -> Source:
    """A VisDrone-DET split. `classes` (a class-list file) names categories 1..N for a set in VisDrone's
    layout with classes of its own; the default is the benchmark's ten."""
    from mfssd_deploy.classes import read_class_list

    names = CLASSES if classes is None else read_class_list(classes)
    folder = split_folder(Path(root), split)
    if folder is None:
        like = f"VisDrone2019-DET-{SPLIT_FOLDERS.get(split, (split,))[0]}"
        raise MissingSplit(f"no VisDrone {split!r} split under {root}: expected a folder named like {like} "
                         "with images/ and annotations/")  # fmt: skip
    images = sorted(p for p in (folder / "images").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    skipped: list[str] = []
    records = []
    for i, img in enumerate(images, 1):
        size = image_size(img)
        if size is None:
            _report(skipped, img.name, "unreadable image, left out")
            continue
        w, h = size
        boxes: list[list[float]] = []
        labels: list[int] = []
        ignore: list[list[float]] = []
        ann = folder / "annotations" / f"{img.stem}.txt"
        lines = ann.read_text().splitlines() if ann.is_file() else []
        for n, line in enumerate(lines, 1):
            parts = [v for v in line.strip().split(",") if v.strip() != ""]
            if not parts:
                continue
            where = f"{ann}:{n}"
            try:
                left, top, bw, bh, score = (float(v) for v in parts[:5])
                cat = int(parts[5])
            except (ValueError, IndexError):
                _report(skipped, ann.name, f"line {n}: not left,top,width,height,score,category,...")
                continue
            if not 0 <= cat <= len(names) + 1:
                raise MfssdError(f"{where}: category {cat} is outside 0..{len(names) + 1} (0 ignored regions, "
                                 f"1-{len(names)} classes, {len(names) + 1} others)")  # fmt: skip
            box, problem = _check_box(left, top, left + bw, top + bh, w, h)
            if box is None:
                _report(skipped, ann.name, f"line {n}: {problem}")
                continue
            if cat in (0, len(names) + 1) or score == 0:  # ignored regions, "others"
                ignore.append(box)
            else:
                boxes.append(box)
                labels.append(cat)
        rec = _record(img, i, w, h, boxes, labels, [False] * len(labels))
        # an ignore region holds for every class: one crowd region per class, as COCO keeps them per class
        rec.crowd_boxes = np.asarray([b for b in ignore for _ in names], np.float32).reshape(-1, 4)
        rec.crowd_labels = np.asarray([c for _ in ignore for c in range(1, len(names) + 1)], np.int64)
        rec.crowd_areas = np.full(len(rec.crowd_labels), np.nan)
        records.append(rec)
    return Source(folder.name, tuple(names), records, skipped)
