"""Turn what users pass (paths, arrays, lists of both) into BGR uint8 HxWx3 arrays, or say what is wrong."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mfssd_deploy.errors import MfssdError

ImageLike = str | os.PathLike[str] | np.ndarray
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files below `folder` (recursively, by suffix), sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


# The flags of every image read in the package. ANYDEPTH keeps 16-bit and ANYCOLOR keeps grayscale as
# one channel, and unlike IMREAD_UNCHANGED (which ignores the tag) they let OpenCV apply the EXIF
# orientation: a phone photo comes out upright, as it is displayed and annotated. OpenCV drops an
# alpha channel under these flags exactly as as_bgr would (BGRA -> BGR keeps B, G, R unchanged).
READ_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR


def list_images(folder: str | os.PathLike[str], limit: int | None = None) -> list[Path]:
    """Image files of a folder (recursively), evenly spread over the sorted list when limited."""
    root = Path(folder)
    if not root.is_dir():
        raise MfssdError(f"image folder not found: {root}")
    files = image_files(root)
    if not files:
        raise MfssdError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {root}")
    if limit is not None and limit < len(files):
        idx = np.linspace(0, len(files) - 1, limit).round().astype(int)
        files = [files[i] for i in idx]
    return files


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """THE image reader of the package: a file -> BGR uint8 HxWx3, upright per its EXIF orientation.

    Detection, evaluation, training, calibration and parity all read through here, so one file gives
    one array everywhere (grayscale, 16-bit and alpha included). Raises MfssdError naming the file.
    """
    p = Path(path)
    if not p.exists():
        raise MfssdError(f"image not found: {p}")
    if not p.is_file():
        raise MfssdError(f"{p} is not a file (for a folder use det.stream or mfssd-detect)")
    try:
        data = np.fromfile(p, dtype=np.uint8)  # not cv2.imread: also reads non-ASCII paths on Windows
    except OSError as exc:
        raise MfssdError(f"cannot read {p}: {exc.strerror or exc}") from exc
    img = cv2.imdecode(data, READ_FLAGS) if data.size else None
    if img is None:
        raise MfssdError(f"{p} is not an image OpenCV can decode (corrupt, empty or another file type)")
    return as_bgr(img, str(p))


def as_bgr(img: Any, name: str = "array") -> np.ndarray:
    """Validate an array and convert grayscale / BGRA / 16-bit to BGR uint8 HxWx3."""
    if not isinstance(img, np.ndarray):
        raise MfssdError(f"{name}: expected a path or a numpy array, got {type(img).__name__}")
    if img.size == 0:
        raise MfssdError(f"{name}: the image array is empty (shape {img.shape})")
    if img.dtype == np.uint16:
        img = (img / 257).astype(np.uint8)  # 16-bit PNG/TIFF from a file
    elif img.dtype != np.uint8:
        hint = " (it contains NaN)" if np.issubdtype(img.dtype, np.floating) and np.isnan(img).any() else ""
        raise MfssdError(f"{name}: dtype {img.dtype}{hint}; pass a BGR uint8 HxWx3 image (0-255)")
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        return cv2.cvtColor(img.reshape(img.shape[0], img.shape[1]), cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.ndim == 3 and img.shape[2] == 3:
        return img
    raise MfssdError(f"{name}: shape {img.shape} is not an image; pass HxW (gray), HxWx3 (BGR) or HxWx4 (BGRA)")


def load_images(images: ImageLike | Sequence[ImageLike]) -> tuple[list[np.ndarray], list[str | None]]:
    """A single image or a list of them -> (BGR arrays, source names)."""
    items = list(images) if isinstance(images, list | tuple) else [images]
    if not items:
        raise MfssdError("no images given")
    arrays: list[np.ndarray] = []
    names: list[str | None] = []
    for i, item in enumerate(items):
        if isinstance(item, str | os.PathLike):
            arrays.append(read_image(item))
            names.append(str(item))
        else:
            arrays.append(as_bgr(item, f"image {i}"))
            names.append(None)
    return arrays, names
