"""Class names: the one rule that pairs a model with a dataset, by name and never by position.

A model's labels are 0-based positions in its config's class_names; a dataset's are 1-based positions
in its own list (COCO categories sorted by id, a VOC class list). Two lists with the same names in
another order agree through `label_map`; lists whose names differ are refused, naming both, because a
positional match would score or train every class as another one with no error at all.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mfssd_deploy.errors import MfssdError

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

# Files a VOC-layout dataset may keep its class list in (one name per line), in the order looked for.
CLASS_LIST_FILES = ("classes.txt", "labels.txt")


def _short(names: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return f"[{shown}{', ...' if len(names) > limit else ''}] ({len(names)})"


def check_unique(names: Sequence[str], what: str) -> tuple[str, ...]:
    """The names as a tuple; duplicates or empty names are refused (a name must pick one class)."""
    seen: set[str] = set()
    for n in names:
        if not n or n != n.strip():
            raise MfssdError(f"{what}: class name {n!r} is empty or has surrounding spaces")
        if n in seen:
            raise MfssdError(f"{what}: class name {n!r} appears twice; each class needs its own name")
        seen.add(n)
    return tuple(names)


def label_map(src: Sequence[str], dst: Sequence[str], src_what: str, dst_what: str) -> np.ndarray:
    """Lookup table from 1-based labels of `src` to 1-based labels of `dst` (0, background, stays 0).

    Raises when the two lists do not hold the same names: one line, both lists, and the way out."""
    if set(src) != set(dst) or len(src) != len(dst):
        only_src = [n for n in src if n not in set(dst)]
        only_dst = [n for n in dst if n not in set(src)]
        raise MfssdError(
            f"class names differ: {src_what} has {_short(list(src))}, {dst_what} has {_short(list(dst))}"
            f"; only in the first: {only_src[:6]}, only in the second: {only_dst[:6]}"
            " (classes are matched by name; use a dataset and model with the same class names)"
        )
    index = {n: i + 1 for i, n in enumerate(dst)}
    return np.asarray([0, *(index[n] for n in src)], dtype=np.int64)


def read_class_list(spec: str | os.PathLike[str]) -> tuple[str, ...]:
    """'voc' (VOC's 20), or a text file with one class name per line (blank lines and '#' comments skipped)."""
    if str(spec).lower() == "voc":
        return VOC_CLASSES
    p = Path(spec)
    if not p.is_file():
        raise MfssdError(f"class list not found: {p} (give 'voc' or a text file with one class name per line)")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise MfssdError(f"{p}: not a readable UTF-8 class list ({exc})") from exc
    names = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    if not names:
        raise MfssdError(f"{p} lists no class names (one name per line)")
    return check_unique(names, str(p))
