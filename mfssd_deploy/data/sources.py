"""Annotation sources (COCO JSON, Pascal VOC XML) read into plain records, validated once.

No torch here: evaluation of deployed models must not need it. A malformed annotation is
reported with its file and id, skipped and counted, never a crash in the middle of an epoch.
"""

from __future__ import annotations

import logging
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mfssd_deploy.classes import CLASS_LIST_FILES, VOC_CLASSES, check_unique, read_class_list
from mfssd_deploy.data.records import EDGE_TOLERANCE, Record, Source, _check_box, _record, _report

__all__ = ["EDGE_TOLERANCE", "LAYOUTS", "Record", "Source", "detect_layout", "load_coco", "load_voc", "open_dataset"]
from mfssd_deploy.errors import MfssdError, MissingSplit

log = logging.getLogger("mfssd_deploy.data")


def _area(a: dict) -> float:
    """The annotation's "area" when it is a number >= 0, else NaN (the box's area is used)."""
    try:
        v = float(a["area"])
    except (KeyError, TypeError, ValueError):
        return float("nan")
    return v if np.isfinite(v) and v >= 0 else float("nan")


def load_coco(ann_file: str | os.PathLike[str], image_dir: str | os.PathLike[str]) -> Source:
    """A COCO-format detection JSON. Crowd annotations are validated like the others and kept apart
    from the training boxes (Record.crowd_boxes), for COCO evaluation."""
    import json

    ann_path, img_root = Path(ann_file), Path(image_dir)
    if not ann_path.is_file():
        raise MfssdError(f"annotation file not found: {ann_path}")
    try:
        data = json.loads(ann_path.read_text())
        cats = sorted(data["categories"], key=lambda c: c["id"])
        images = data["images"]
        anns = data.get("annotations", [])
    except (ValueError, KeyError, TypeError) as exc:
        raise MfssdError(f"{ann_path} is not a COCO detection JSON ({type(exc).__name__}: {exc})") from exc
    cat_to_label = {c["id"]: i + 1 for i, c in enumerate(cats)}
    by_image: dict[int, list[dict]] = {}
    for a in anns:
        by_image.setdefault(a.get("image_id"), []).append(a)
    skipped: list[str] = []
    known_ids = {im["id"] for im in images}
    for image_id in by_image.keys() - known_ids:
        for a in by_image[image_id]:
            _report(skipped, ann_path.name, f"annotation id {a.get('id')}: unknown image_id {image_id}")
    records = []
    for im in images:
        w, h = int(im["width"]), int(im["height"])
        boxes: list[list[float]] = []
        labels: list[int] = []
        areas: list[float] = []
        crowd: tuple[list[list[float]], list[int], list[float]] = ([], [], [])
        for a in by_image.get(im["id"], []):
            where = f"annotation id {a.get('id')} of {im['file_name']}"
            if a.get("category_id") not in cat_to_label:
                _report(skipped, ann_path.name, f"{where}: unknown category_id {a.get('category_id')}")
                continue
            try:
                x, y, bw, bh = (float(v) for v in a["bbox"])
            except (KeyError, TypeError, ValueError):
                _report(skipped, ann_path.name, f"{where}: bbox is not [x, y, w, h]")
                continue
            box, problem = _check_box(x, y, x + bw, y + bh, w, h)
            if box is None:
                _report(skipped, ann_path.name, f"{where}: {problem}")
                continue
            into = crowd if a.get("iscrowd", 0) else (boxes, labels, areas)
            into[0].append(box)
            into[1].append(cat_to_label[a["category_id"]])
            into[2].append(_area(a))
        rec = _record(img_root / im["file_name"], int(im["id"]), w, h, boxes, labels, [False] * len(labels))
        rec.areas = np.asarray(areas, dtype=np.float64)
        rec.crowd_boxes = np.asarray(crowd[0], dtype=np.float32).reshape(-1, 4)
        rec.crowd_labels = np.asarray(crowd[1], dtype=np.int64)
        rec.crowd_areas = np.asarray(crowd[2], dtype=np.float64)
        records.append(rec)
    names = check_unique([str(c.get("name", "")) for c in cats], f"{ann_path} categories")
    return Source(ann_path.stem, names, records, skipped, coco_json=ann_path)


_ANNOUNCED: set[tuple[Path, tuple[str, ...]]] = set()  # said once per folder, not once per split


def voc_class_names(root: str | os.PathLike[str], classes: str | os.PathLike[str] | None = None) -> tuple[str, ...]:
    """A VOC-layout dataset's class list, never a guess by position: `classes` ('voc' or a file), else a
    classes.txt / labels.txt in the folder or its parent, else VOC's 20 for a folder named like Pascal
    VOC's own (VOC2007, VOC2012), else every object name in Annotations/*.xml (all splits, so train and
    val agree), sorted and announced."""
    root = Path(root)
    if classes is not None:
        return read_class_list(classes)
    for folder in (root, root.parent):
        for name in CLASS_LIST_FILES:
            if (folder / name).is_file():
                return read_class_list(folder / name)
    if re.fullmatch(r"VOC\d{4}", root.name):
        return VOC_CLASSES
    found: set[str] = set()
    for xml_path in sorted((root / "Annotations").glob("*.xml")):
        try:
            found.update((o.findtext("name") or "").strip() for o in ET.parse(xml_path).getroot().iter("object"))
        except (ET.ParseError, OSError):
            continue  # reported with file and id when the split is read
    found.discard("")
    if not found:
        raise MfssdError(f"no object names in {root / 'Annotations'}; give the classes in {root / 'classes.txt'}")
    names = tuple(sorted(found))
    if (root, names) in _ANNOUNCED:
        return names
    _ANNOUNCED.add((root, names))
    log.warning("%s: classes discovered from the XML files (sorted): %s; write %s to fix another order",
                root, ", ".join(names), root / "classes.txt")  # fmt: skip
    return check_unique(names, str(root / "Annotations"))


def load_voc(root: str | os.PathLike[str], split: str, class_names: Sequence[str] | None = None) -> Source:
    """A VOCdevkit year folder (JPEGImages/, Annotations/, ImageSets/Main/SPLIT.txt); class_names default
    to voc_class_names(root).

    Boxes are converted from VOC's 1-based inclusive pixels to 0-based xyxy (x1 - 1, y1 - 1, x2, y2).
    """
    root = Path(root)
    ids_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not ids_file.is_file():
        raise MissingSplit(f"not a VOC folder or no split {split!r}: {ids_file} is missing")
    class_names = tuple(class_names) if class_names is not None else voc_class_names(root)
    index = {c: i + 1 for i, c in enumerate(class_names)}
    skipped: list[str] = []
    records = []
    for n, image_name in enumerate(ids_file.read_text().split()):
        xml_path = root / "Annotations" / f"{image_name}.xml"
        try:
            tree = ET.parse(xml_path).getroot()
            size = tree.find("size")
            w = int(size.findtext("width"))  # type: ignore[union-attr,arg-type]
            h = int(size.findtext("height"))  # type: ignore[union-attr,arg-type]
        except (ET.ParseError, OSError, AttributeError, TypeError, ValueError) as exc:
            _report(skipped, xml_path.name, f"image {image_name}: unreadable annotation ({type(exc).__name__})")
            continue
        boxes, labels, difficult = [], [], []
        for k, obj in enumerate(tree.iter("object")):
            where = f"object {k} of {xml_path.name}"
            name = (obj.findtext("name") or "").strip()
            if name not in index:
                _report(skipped, xml_path.name, f"{where}: unknown class {name!r}")
                continue
            try:
                bb = obj.find("bndbox")
                x1, y1, x2, y2 = (float(bb.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax"))  # type: ignore[union-attr,arg-type]
            except (AttributeError, TypeError, ValueError):
                _report(skipped, xml_path.name, f"{where}: bndbox is missing or not numeric")
                continue
            box, problem = _check_box(x1 - 1, y1 - 1, x2, y2, w, h)
            if problem:
                _report(skipped, xml_path.name, f"{where}: {problem}")
                continue
            boxes.append(box)
            labels.append(index[name])
            difficult.append(obj.findtext("difficult", "0").strip() == "1")
        records.append(_record(root / "JPEGImages" / f"{image_name}.jpg", n + 1, w, h, boxes, labels, difficult))
    return Source(f"{root.name}-{split}", tuple(class_names), records, skipped)


def _coco_files(p: Path, split: str) -> tuple[Path, Path] | None:
    """(annotation file, image folder) of a COCO-format split under p, or None."""
    if p.is_file() and p.suffix == ".json":
        return p, (p.parent.parent / split if p.parent.name == "annotations" else p.parent)
    for ann, imgs in (
        (p / "annotations" / f"{split}.json", p / split),
        (p / "annotations" / f"instances_{split}2017.json", p / f"{split}2017"),
    ):
        if ann.is_file():
            return ann, imgs
    return None


def _voc_root(p: Path) -> Path | None:
    for root in (p, p / "VOC2007"):
        if (root / "ImageSets" / "Main").is_dir():
            return root
    return None


def _load_coco(p: Path, split: str, classes: str | os.PathLike[str] | None) -> Source:
    files = _coco_files(p, split)
    if files is None:
        raise MissingSplit(f"no COCO annotations for {split!r} under {p}: expected annotations/{split}.json "
                         f"or annotations/instances_{split}2017.json")  # fmt: skip
    if classes is not None:
        raise MfssdError(f"--classes applies to VOC folders; {files[0]} names its own categories")
    return load_coco(*files)


def _load_voc(p: Path, split: str, classes: str | os.PathLike[str] | None) -> Source:
    root = _voc_root(p)
    if root is None:
        raise MfssdError(f"{p} is not a VOC folder: expected ImageSets/Main/{split}.txt (or VOC2007/ inside)")
    return load_voc(root, split, voc_class_names(root, classes))


def _load_yolo(p: Path, split: str, classes: str | os.PathLike[str] | None) -> Source:
    from mfssd_deploy.data.yolo import load_yolo

    if classes is not None:
        raise MfssdError("--classes applies to VOC folders; a YOLO data.yaml names its classes")
    return load_yolo(p, split)


def _load_visdrone(p: Path, split: str, classes: str | os.PathLike[str] | None) -> Source:
    from mfssd_deploy.data.visdrone import load_visdrone

    return load_visdrone(p, split, classes)


def _is_yolo(p: Path, split: str) -> bool:
    from mfssd_deploy.data.yolo import find_yaml

    return find_yaml(p) is not None


def _is_visdrone(p: Path, split: str) -> bool:
    from mfssd_deploy.data.visdrone import is_visdrone

    return is_visdrone(p)


@dataclass(frozen=True)
class Layout:
    """One dataset layout: how a folder is recognised, how a split of it is read, and what it looks like."""

    name: str
    detect: Callable[[Path, str], bool]
    load: Callable[[Path, str, str | os.PathLike[str] | None], Source]
    looks_like: str


# The dataset layouts --data reads, in the order they are tried (a new layout: a reader module and a row).
LAYOUTS: dict[str, Layout] = {
    lay.name: lay
    for lay in (
        Layout("coco", lambda p, s: _coco_files(p, s) is not None, _load_coco,
               "annotations/SPLIT.json (+ SPLIT/), annotations/instances_SPLIT2017.json, or a COCO JSON file"),
        Layout("voc", lambda p, s: _voc_root(p) is not None, _load_voc,
               "ImageSets/Main/SPLIT.txt + Annotations/*.xml + JPEGImages/ (or a VOCdevkit holding VOC2007)"),
        Layout("yolo", _is_yolo, _load_yolo, "data.yaml + images/SPLIT/ + labels/SPLIT/*.txt"),
        Layout("visdrone", _is_visdrone, _load_visdrone, "*-DET-SPLIT/images/ + *-DET-SPLIT/annotations/*.txt"),
    )
}  # fmt: skip


def detect_layout(path: str | os.PathLike[str], split: str = "val") -> str:
    """The one layout `path` holds; several (or none) is an error naming them and the --format way out."""
    p = Path(path)
    if not p.exists():
        raise MfssdError(f"dataset not found: {p}")
    found = [name for name, lay in LAYOUTS.items() if lay.detect(p, split)]
    if len(found) > 1:
        raise MfssdError(
            f"{p} looks like {' and '.join(found)} datasets at once: pass --format {found[0]} (or another)"
        )
    if not found:
        expected = "; ".join(f"{lay.name}: {lay.looks_like}" for lay in LAYOUTS.values())
        raise MfssdError(f"no {split!r} annotations under {p}: expected one of these layouts: {expected}")
    return found[0]


def open_dataset(
    path: str | os.PathLike[str],
    split: str = "val",
    classes: str | os.PathLike[str] | None = None,
    format: str | None = None,
) -> Source:
    """The annotations of `split` under `path`, in any of LAYOUTS (found by detect_layout, or `format`):

    - COCO format: PATH/annotations/SPLIT.json with images in PATH/SPLIT/ (what mfssd-data writes), COCO
      2017 (annotations/instances_SPLIT2017.json, images in SPLIT2017/), or a COCO JSON file itself;
    - Pascal VOC: a year folder (ImageSets/Main/SPLIT.txt) or a VOCdevkit holding VOC2007;
    - YOLO: data.yaml with images/SPLIT/ and labels/SPLIT/ (data.yolo);
    - VisDrone-DET: VisDrone2019-DET-SPLIT/{images,annotations} (data.visdrone).

    `classes` ('voc' or a class-list file) is a VOC layout's class list (see voc_class_names); the other
    layouts name their own classes, so `classes` is refused there rather than silently ignored.
    """
    p = Path(path)
    if format is not None and format not in LAYOUTS:
        raise MfssdError(f"--format {format!r}: choose one of {', '.join(LAYOUTS)}")
    if not p.exists():
        raise MfssdError(f"dataset not found: {p}")
    name = format or detect_layout(p, split)
    return LAYOUTS[name].load(p, split, classes)
