"""The YOLO layout (what most labelling tools and dataset hubs export), read into the same records.

    data.yaml            path (root), train / val / test (image folders, relative to path), names
    images/<split>/*.jpg
    labels/<split>/*.txt one line per object: class cx cy w h, normalised to 0..1

Label files are found as ultralytics finds them: the last /images/ of an image path becomes /labels/
and the suffix .txt; an image without a label file has no objects. Errors that mean the dataset is not
what this reader thinks (a class index beyond `names`, coordinates outside 0..1 as pixel labels would
be, 4 or 6+ columns as segment or prediction files have) stop the read with the file and line; a
single bad value (not a number, a zero-size box) is reported, skipped and counted like COCO's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mfssd_deploy.classes import check_unique
from mfssd_deploy.data.imagesize import image_size
from mfssd_deploy.data.records import Source, _check_box, _record, _report
from mfssd_deploy.errors import MfssdError, MissingSplit

COORD_TOLERANCE = 1e-3  # normalised coordinates a rounding may push past 0 or 1


def find_yaml(root: Path) -> Path | None:
    """root/data.yaml (or the first *.yaml holding `names`), or root itself when it is a .yaml file."""
    if root.is_file() and root.suffix in (".yaml", ".yml"):
        return root
    for name in ("data.yaml", "data.yml", "dataset.yaml"):
        if (root / name).is_file():
            return root / name
    return None


def read_yaml(path: Path) -> dict[str, Any]:
    import yaml  # type: ignore[import-untyped]

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise MfssdError(f"{path}: not a readable YAML file ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise MfssdError(f"{path}: a YOLO data.yaml is a mapping with path, train, val and names")
    return data


def yolo_names(data: dict[str, Any], where: Path) -> tuple[str, ...]:
    """`names` as a list, or an index -> name mapping with indices 0..N-1."""
    names = data.get("names")
    if isinstance(names, dict):
        try:
            idx = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise MfssdError(f"{where}: names maps indices to names; {list(names)[:3]} are not indices") from None
        if idx != list(range(len(idx))):
            raise MfssdError(f"{where}: names indices must be 0..{len(idx) - 1} without gaps, got {idx[:8]}")
        names = [names[k] if k in names else names[str(k)] for k in idx]
    if not isinstance(names, list) or not names:
        raise MfssdError(f"{where} has no `names` (the class list: a list, or index: name); add it")
    return check_unique([str(n) for n in names], str(where))


def split_images(data: dict[str, Any], yaml_path: Path, split: str) -> tuple[Path, list[Path]]:
    """(images folder, image files) of a split: a folder, a list of folders, or a .txt of image paths."""
    from mfssd_deploy.runtime.inputs import IMAGE_SUFFIXES

    if split not in data or data[split] in (None, ""):
        given = [k for k in ("train", "val", "test") if data.get(k)]
        raise MissingSplit(f"{yaml_path} has no {split!r} split (it has {', '.join(given) or 'none'})")
    base = Path(data.get("path") or yaml_path.parent)
    if not base.is_absolute():
        base = (yaml_path.parent / base).resolve()
    entries = data[split] if isinstance(data[split], list) else [data[split]]
    files: list[Path] = []
    first: Path | None = None
    for entry in entries:
        p = Path(entry) if Path(entry).is_absolute() else base / str(entry)
        first = first or p
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file() and p.suffix == ".txt":
            for line in p.read_text().splitlines():
                if line.strip():
                    q = Path(line.strip())
                    files.append(q if q.is_absolute() else (p.parent / q))
        else:
            raise MfssdError(f"{yaml_path}: {split} points at {p}, which does not exist; fix `path` or `{split}`")
    assert first is not None
    return first, files


def label_path(image: Path) -> Path:
    """ultralytics' rule: the last /images/ in the path becomes /labels/, the suffix .txt."""
    s = str(image)
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    head, sep, tail = s.rpartition(sa)
    return Path((head + sb + tail) if sep else s).with_suffix(".txt")


def parse_label_file(path: Path, num_classes: int, report: Any) -> list[tuple[int, float, float, float, float]]:
    """(class, cx, cy, w, h) per line; hard errors for a layout mistake, `report` for a bad line."""
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        where = f"{path}:{n}"
        if len(parts) != 5:
            kind = "a segment or keypoint label" if len(parts) > 6 else "not class cx cy w h"
            raise MfssdError(f"{where}: {len(parts)} columns ({kind}); a detection label is 5: class cx cy w h")
        try:
            cls_f, *coords = (float(v) for v in parts)
        except ValueError:
            report(path.name, f"line {n}: not numbers: {line.strip()[:40]!r}")
            continue
        if not cls_f.is_integer() or not 0 <= cls_f < num_classes:
            raise MfssdError(
                f"{where}: class {parts[0]} is outside the {num_classes} names of data.yaml (0..{num_classes - 1})"
            )
        if not all(np.isfinite(coords)) or min(coords) < -COORD_TOLERANCE or max(coords) > 1 + COORD_TOLERANCE:
            raise MfssdError(f"{where}: coordinates {parts[1:]} are outside 0..1; YOLO labels are normalised "
                             "(divide pixel coordinates by the image width and height)")  # fmt: skip
        cx, cy, w, h = coords
        out.append((int(cls_f), cx, cy, w, h))
    return out


def load_yolo(root: str | os.PathLike[str], split: str) -> Source:
    """A YOLO dataset's split as a Source (labels 1-based in `names` order; image ids 1..N in file order)."""
    yaml_path = find_yaml(Path(root))
    if yaml_path is None:
        raise MfssdError(f"{root}: no data.yaml (a YOLO dataset names its classes and splits there)")
    data = read_yaml(yaml_path)
    names = yolo_names(data, yaml_path)
    folder, files = split_images(data, yaml_path, split)
    if files and not any(label_path(f).parent.is_dir() for f in files[:50]):
        raise MfssdError(f"{folder} has images but no labels folder beside it ({label_path(files[0]).parent}); "
                         "YOLO labels live in labels/<split>/ next to images/<split>/")  # fmt: skip
    skipped: list[str] = []
    records = []
    for i, img in enumerate(files, 1):
        lab = label_path(img)
        rows = parse_label_file(lab, len(names), lambda s, m: _report(skipped, s, m)) if lab.is_file() else []
        size = image_size(img)
        if size is None:
            _report(skipped, img.name, f"unreadable or missing image, left out with its {len(rows)} boxes")
            continue
        w, h = size
        boxes, labels = [], []
        for k, (c, cx, cy, bw, bh) in enumerate(rows):
            box, problem = _check_box((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h, w, h)
            if box is None:
                _report(skipped, lab.name, f"object {k}: {problem}")
                continue
            boxes.append(box)
            labels.append(c + 1)
        records.append(_record(img, i, w, h, boxes, labels, [False] * len(labels)))
    return Source(f"{yaml_path.parent.name}-{split}", names, records, skipped)
