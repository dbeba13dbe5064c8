"""An image's (width, height) as the Detector's reader will see it, from the file header where possible.

Layouts that store normalised (YOLO) or no (VisDrone) image sizes need them to turn labels into pixel
boxes. Pillow reads only the header (milliseconds for a 2000x1500 JPEG, where a full decode takes
tens); without Pillow (the lean install) OpenCV decodes the image. The EXIF orientation is applied,
as runtime.inputs.read_image applies it, so boxes land on the pixels the model is given.
"""

from __future__ import annotations

from pathlib import Path

EXIF_ORIENTATION = 0x0112
SWAPS_SIDES = (5, 6, 7, 8)  # the EXIF orientations that rotate by 90 degrees


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) after EXIF orientation, or None when the file is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        from PIL import Image
    except ImportError:
        return _cv2_size(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(EXIF_ORIENTATION, 1)  # JPEG, PNG (eXIf) and WebP alike, as OpenCV
    except (OSError, ValueError, SyntaxError):
        return _cv2_size(path)
    return (h, w) if orientation in SWAPS_SIDES else (w, h)


def _cv2_size(path: Path) -> tuple[int, int] | None:
    from mfssd_deploy.errors import MfssdError
    from mfssd_deploy.runtime.inputs import read_image

    try:
        img = read_image(path)
    except MfssdError:
        return None
    return int(img.shape[1]), int(img.shape[0])
