"""Encoded image bytes from a request -> a BGR uint8 image, the way the package reads image files.

The same OpenCV flags and checks as inputs.read_image (EXIF orientation applied, grayscale, 16-bit and
alpha converted by inputs.as_bgr), so an image sent to the server gives the same array, and the
same detections, as the file read by a local Detector. Oversized and undecodable inputs are refused
with a message naming the problem, which the server returns as the request's error.
"""

from __future__ import annotations

import cv2
import numpy as np

from mfssd_deploy.errors import MfssdError
from mfssd_deploy.runtime.inputs import READ_FLAGS, as_bgr


def decode_image(data: np.ndarray, name: str, max_bytes: int) -> np.ndarray:
    """`data`, a uint8 row of an encoded file (JPEG, PNG, ...) -> BGR uint8 HxWx3; MfssdError naming `name`."""
    if data.size == 0:
        raise MfssdError(f"{name} is empty (0 bytes): send the encoded image file's bytes")
    if data.size > max_bytes:
        raise MfssdError(
            f"{name} is {data.size / 1e6:.1f} MB, over the server's {max_bytes / 1e6:.1f} MB limit: "
            "send a smaller image (or restart mfssd-serve with a larger --max-image-mb)"
        )
    img = cv2.imdecode(np.ascontiguousarray(data, dtype=np.uint8), READ_FLAGS)
    if img is None:
        raise MfssdError(f"{name} ({data.size} bytes) is not an image OpenCV can decode: send JPEG or PNG bytes")
    return as_bgr(img, name)


def image_rows(files: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Encoded files -> the image model's inputs: uint8 rows zero-padded to the longest, and their lengths."""
    if not files:
        raise MfssdError("no images given")
    width = max(len(f) for f in files)
    rows = np.zeros((len(files), width), np.uint8)
    for i, f in enumerate(files):
        rows[i, : len(f)] = np.frombuffer(f, np.uint8)
    return rows, np.array([[len(f)] for f in files], np.int32)
