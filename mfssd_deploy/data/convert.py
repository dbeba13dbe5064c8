"""Write a dataset read by any layout (data.sources.LAYOUTS) in the COCO, YOLO or VOC layout.

Lossless where the target can hold it; what it cannot hold is counted and said (crowd / ignore regions
and VOC's difficult flags have no place in YOLO's label files; VOC's XML has no crowd regions; COCO has
no difficult flag, so difficult objects become crowd regions, which COCO evaluation ignores as VOC's
rule does). The output is built in a temporary folder beside OUT and renamed onto it at the end:
an error leaves nothing behind, and OUT must be new or empty and outside the source.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mfssd_deploy.data.sources import Source, detect_layout, open_dataset
from mfssd_deploy.errors import MfssdError, MissingSplit
from mfssd_deploy.fileio import refuse_nonempty

TARGETS = ("coco", "yolo", "voc")
SPLITS = ("train", "val", "test")


def read_splits(src: Path, fmt: str | None = None, splits: Sequence[str] = SPLITS) -> dict[str, Source]:
    """Every split of SRC that exists (at least one); an error inside a split that exists stops the
    conversion (a split silently left out would be a dataset lost)."""
    if fmt is None:
        found = []
        for split in splits:
            try:
                found.append(detect_layout(src, split))
            except MfssdError:
                continue
        if not found:
            detect_layout(src, splits[-1])  # raises, naming what each layout looks like
        fmt = found[0]
    out: dict[str, Source] = {}
    for split in splits:
        try:
            out[split] = open_dataset(src, split, format=fmt)
        except MissingSplit:
            continue
    if not out:
        raise MfssdError(f"{src} holds none of the splits {', '.join(splits)} in the {fmt} layout")
    missing = [r.path for s in out.values() for r in s.records if not r.path.is_file()]
    if missing:
        raise MfssdError(f"{len(missing)} images of {src} are missing (e.g. {missing[0]}); nothing was converted")
    return out


def convert(
    src: str | os.PathLike[str], to: str, out: str | os.PathLike[str], fmt: str | None = None
) -> dict[str, Any]:
    """Convert SRC into OUT in layout `to`; returns what was written and what was dropped."""
    if to not in TARGETS:
        raise MfssdError(f"--to {to!r}: choose one of {', '.join(TARGETS)}")
    s, o = Path(src).resolve(), Path(out).resolve()
    if o == s or s in o.parents or o in s.parents:
        raise MfssdError(f"--out {out} overlaps the source {src}: write the converted set elsewhere")
    refuse_nonempty(o, "--out", "give a new or empty folder")
    splits = read_splits(s, fmt)
    o.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{o.name}.", dir=o.parent))
    try:
        report = {"coco": _coco, "yolo": _yolo, "voc": _voc}[to](splits, tmp)
        if o.exists():
            o.rmdir()  # empty: checked above
        os.replace(tmp, o)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.update(to=to, out=str(o), splits={k: len(v.records) for k, v in splits.items()},
                  skipped_in_source=sum(len(v.skipped) for v in splits.values()))  # fmt: skip
    return report


def _names(splits: dict[str, Source]) -> tuple[str, ...]:
    names = {v.class_names for v in splits.values()}
    if len(names) != 1:
        raise MfssdError(f"the splits list different classes ({sorted(names)}); convert each split on its own")
    return names.pop()


def _regions(r: Any) -> int:
    """Distinct crowd / ignore regions of a record (a VisDrone ignore region is kept once per class)."""
    return len({tuple(np.round(b, 3)) for b in r.crowd_boxes})


def _copy(rec_path: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(rec_path, dest)


def _unique_names(splits: dict[str, Source]) -> dict[tuple[str, int], str]:
    """A file name per (split, image id): the source's own name where no other image's stem is the same
    (case aside: a.jpg and A.jpeg would collide in VOC's ID list), else SPLIT_ID_NAME, unique by id."""
    seen: dict[str, int] = {}
    for v in splits.values():
        for r in v.records:
            seen[r.path.stem.lower()] = seen.get(r.path.stem.lower(), 0) + 1
    return {(k, r.image_id): (r.path.name if seen[r.path.stem.lower()] == 1 else f"{k}_{r.image_id}_{r.path.name}")
            for k, v in splits.items() for r in v.records}  # fmt: skip


def _coco(splits: dict[str, Source], out: Path) -> dict[str, Any]:
    names = _names(splits)
    files = _unique_names(splits)
    difficult_as_crowd = 0
    for split, source in splits.items():
        images: list[dict[str, Any]] = []
        anns: list[dict[str, Any]] = []
        for r in source.records:
            fname = files[(split, r.image_id)]
            _copy(r.path, out / split / fname)
            images.append({"id": r.image_id, "file_name": fname, "width": r.width, "height": r.height})
            areas = r.areas if r.areas is not None else [float("nan")] * len(r.boxes)
            rows = [(b, lab, bool(d), a) for b, lab, d, a in zip(r.boxes, r.labels, r.difficult, areas, strict=True)]
            rows += [(b, lab, True, a) for b, lab, a in zip(r.crowd_boxes, r.crowd_labels, r.crowd_areas, strict=True)]
            for b, lab, crowd, area in rows:
                w, h = float(b[2] - b[0]), float(b[3] - b[1])
                anns.append({"id": len(anns) + 1, "image_id": r.image_id, "category_id": int(lab),
                             "bbox": [float(b[0]), float(b[1]), w, h],
                             "area": w * h if area != area else float(area), "iscrowd": int(crowd)})  # fmt: skip
            difficult_as_crowd += int(r.difficult.sum())
        cats = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
        (out / "annotations").mkdir(parents=True, exist_ok=True)
        (out / "annotations" / f"{split}.json").write_text(
            json.dumps({"images": images, "annotations": anns, "categories": cats})
        )
    return {"dropped": {}, "changed": {"difficult objects written as iscrowd regions": difficult_as_crowd}}


def _yolo(splits: dict[str, Source], out: Path) -> dict[str, Any]:
    names = _names(splits)
    files = _unique_names(splits)
    dropped = {"crowd or ignore regions": 0, "difficult flags (objects kept)": 0}
    for split, source in splits.items():
        for r in source.records:
            fname = files[(split, r.image_id)]
            _copy(r.path, out / "images" / split / fname)
            lines = []
            for b, lab in zip(r.boxes, r.labels, strict=True):
                cx, cy = (b[0] + b[2]) / 2 / r.width, (b[1] + b[3]) / 2 / r.height
                w, h = (b[2] - b[0]) / r.width, (b[3] - b[1]) / r.height
                lines.append(f"{int(lab) - 1} {cx:.8f} {cy:.8f} {w:.8f} {h:.8f}")
            label = out / "labels" / split / Path(fname).with_suffix(".txt")
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("".join(ln + "\n" for ln in lines))
            dropped["crowd or ignore regions"] += _regions(r)
            dropped["difficult flags (objects kept)"] += int(r.difficult.sum())
    # no `path`: readers take the YAML's own folder (ultralytics resolves a relative path elsewhere)
    yaml_lines = [*(f"{k}: images/{k}" for k in splits), "names:"]
    yaml_lines += [f"  {i}: {json.dumps(n)}" for i, n in enumerate(names)]
    (out / "data.yaml").write_text("\n".join(yaml_lines) + "\n")
    return {"dropped": dropped, "changed": {}}


def _voc(splits: dict[str, Source], out: Path) -> dict[str, Any]:
    names = _names(splits)
    files = _unique_names(splits)
    dropped = {"crowd or ignore regions": 0}
    for split, source in splits.items():
        ids = []
        for r in source.records:
            fname = files[(split, r.image_id)]
            stem = Path(fname).stem
            if Path(fname).suffix.lower() not in (".jpg", ".jpeg"):
                raise MfssdError(f"{r.path}: the VOC layout holds JPEG images (JPEGImages/ID.jpg); convert to coco "
                                 "or yolo, or re-encode the images as JPEG first")  # fmt: skip
            fname = f"{stem}.jpg"
            ids.append(stem)
            _copy(r.path, out / "JPEGImages" / fname)
            root = ET.Element("annotation")
            ET.SubElement(root, "filename").text = fname
            size = ET.SubElement(root, "size")
            for tag, v in (("width", r.width), ("height", r.height), ("depth", 3)):
                ET.SubElement(size, tag).text = str(v)
            for b, lab, dif in zip(r.boxes, r.labels, r.difficult, strict=True):
                obj = ET.SubElement(root, "object")
                ET.SubElement(obj, "name").text = names[int(lab) - 1]
                ET.SubElement(obj, "difficult").text = "1" if dif else "0"
                bb = ET.SubElement(obj, "bndbox")
                # VOC pixels are 1-based and inclusive: x1 + 1 .. x2 (data.sources.load_voc reads them back)
                for tag, v in (("xmin", b[0] + 1), ("ymin", b[1] + 1), ("xmax", b[2]), ("ymax", b[3])):
                    ET.SubElement(bb, tag).text = f"{float(v):.4f}".rstrip("0").rstrip(".")
            (out / "Annotations").mkdir(parents=True, exist_ok=True)
            ET.ElementTree(root).write(out / "Annotations" / f"{stem}.xml")
            dropped["crowd or ignore regions"] += _regions(r)
        main = out / "ImageSets" / "Main"
        main.mkdir(parents=True, exist_ok=True)
        (main / f"{split}.txt").write_text("".join(i + "\n" for i in ids))
    (out / "classes.txt").write_text("".join(n + "\n" for n in names))
    return {"dropped": dropped, "changed": {}}
