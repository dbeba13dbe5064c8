"""inputs.read_image, the package's one image reader: EXIF orientation applied, 16-bit, gray and alpha kept.

EXIF segments are built by hand here (TIFF header + one IFD entry, tag 0x0112), so the test does not
depend on the library under test (OpenCV) or on Pillow to write them.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from mfssd_deploy import Detector
from mfssd_deploy.runtime.inputs import read_image

from helpers import same


def exif_tiff(orientation: int) -> bytes:
    """Little-endian TIFF block with IFD0 holding one entry: Orientation (0x0112), SHORT, 1 value."""
    entry = struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    return b"II*\x00" + struct.pack("<IH", 8, 1) + entry + struct.pack("<I", 0)


def jpeg_with_orientation(img: np.ndarray, orientation: int) -> bytes:
    """A JPEG of `img` (stored pixels) with an APP1 Exif segment right after SOI, as cameras write it."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    payload = b"Exif\x00\x00" + exif_tiff(orientation)
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    data = buf.tobytes()
    return data[:2] + app1 + data[2:]


def png_with_orientation(img: np.ndarray, orientation: int) -> bytes:
    """A PNG of `img` with an eXIf chunk after IHDR (PNG 1.5 extension)."""
    ok, buf = cv2.imencode(".png", img)
    assert ok
    data = buf.tobytes()
    body = b"eXIf" + exif_tiff(orientation)
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    end_of_ihdr = 8 + 4 + 4 + 13 + 4  # signature, IHDR length, type, data, crc
    return data[:end_of_ihdr] + chunk + data[end_of_ihdr:]


def _t(a: np.ndarray) -> np.ndarray:
    return np.swapaxes(a, 0, 1)


# EXIF 2.3, tag 0x0112: how the stored rows/columns are turned to display the image.
DISPLAY: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # rotated 180
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: _t,  # transposed (mirror + rotate 270 CW)
    6: lambda a: np.rot90(a, -1),  # rotate 90 CW: a portrait phone photo
    7: lambda a: _t(a[::-1, ::-1]),  # transverse (mirror + rotate 90 CW)
    8: lambda a: np.rot90(a, 1),  # rotate 90 CCW (270 CW)
}


def stored_image(h: int = 120, w: int = 200) -> np.ndarray:
    """Noise with a bright square near the stored top-left corner, so orientation is visible."""
    img = (np.random.default_rng(7).random((h, w, 3)) * 120).astype(np.uint8)
    img[10:40, 10:50] = 255
    return img


def _raw(data: bytes) -> np.ndarray:
    """The stored pixels, orientation ignored."""
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_is_read_as_displayed(orientation: int, tmp_path: Path) -> None:
    data = jpeg_with_orientation(stored_image(), orientation)
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    raw = _raw(data)
    assert raw.shape == (120, 200, 3)
    np.testing.assert_array_equal(read_image(path), DISPLAY[orientation](raw))


def test_bright_square_lands_where_a_viewer_shows_it(tmp_path: Path) -> None:
    """Orientation 6: stored (row, col) is displayed at (col, H-1-row): the square moves to the top right."""
    path = tmp_path / "portrait.jpg"
    path.write_bytes(jpeg_with_orientation(stored_image(), 6))
    img = read_image(path)
    assert img.shape == (200, 120, 3)
    rows, cols = slice(10, 50), slice(120 - 40, 120 - 10)  # stored cols 10..50 -> rows; rows 10..40 -> cols
    assert img[rows, cols].min() > 200 and img[10:40, 10:50].mean() < 150


def test_16bit_gray_and_alpha_are_kept_and_oriented(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    gray16 = (rng.random((30, 50)) * 65535).astype(np.uint16)
    bgra16 = (rng.random((30, 50, 4)) * 65535).astype(np.uint16)
    bgra = (rng.random((30, 50, 4)) * 255).astype(np.uint8)
    gray = (rng.random((30, 50)) * 255).astype(np.uint8)

    def bgr8(a: np.ndarray) -> np.ndarray:  # the documented conversion: /257, gray replicated, alpha dropped
        a8 = (a / 257).astype(np.uint8) if a.dtype == np.uint16 else a
        return np.repeat(a8[..., None], 3, axis=2) if a8.ndim == 2 else a8[..., :3]

    for name, arr in (("gray16", gray16), ("bgra16", bgra16), ("bgra", bgra), ("gray", gray)):
        for orientation in (1, 6, 8):
            path = tmp_path / f"{name}_{orientation}.png"
            path.write_bytes(png_with_orientation(arr, orientation))
            got = read_image(path)
            assert got.dtype == np.uint8 and got.shape[2] == 3
            np.testing.assert_array_equal(got, DISPLAY[orientation](bgr8(arr)), err_msg=f"{name} o={orientation}")


def test_detector_boxes_are_in_displayed_coordinates(artifacts: dict[str, Path], tmp_path: Path) -> None:
    data = jpeg_with_orientation(stored_image(), 6)
    path = tmp_path / "portrait.jpg"
    path.write_bytes(data)
    displayed = np.ascontiguousarray(np.rot90(_raw(data), -1))  # what a viewer shows: 200 high, 120 wide
    det = Detector(artifacts["e2e"])
    got = det(str(path))[0]
    ref = det(displayed)[0]
    assert got.image_shape == (200, 120) and len(ref) > 0
    np.testing.assert_array_equal(got.boxes, ref.boxes)
    np.testing.assert_array_equal(got.scores, ref.scores)
    (streamed,) = [f.result for f in det.stream(path)]
    assert streamed is not None and streamed.image_shape == (200, 120)
    same([streamed], [ref], iou=0.9999, tol=1e-6)


def test_evaluation_and_training_read_what_the_detector_reads(tmp_path: Path) -> None:
    """16-bit and EXIF: evaluation and the training set get exactly read_image's pixels (cv2.imread differs)."""
    from mfssd_deploy.data.sources import Record, Source
    from mfssd_deploy.data.torch_dataset import DetectionDataset
    from mfssd_deploy.evaluation.runner import predict_source

    a16 = np.arange(40 * 60 * 3, dtype=np.uint16).reshape(40, 60, 3) * 9  # many values where >>8 != /257
    path = tmp_path / "deep.png"
    path.write_bytes(png_with_orientation(a16, 6))
    expected = read_image(path)
    np.testing.assert_array_equal(expected, np.rot90((a16 / 257).astype(np.uint8), -1))
    empty = np.zeros((0, 4), np.float32)
    rec = Record(path, 1, 40, 60, empty, np.zeros(0, np.int64), np.zeros(0, bool))
    src = Source("t", ("a",), [rec])
    seen: list[np.ndarray] = []

    def predict(images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        seen.extend(images)
        return [(empty, np.zeros(0, np.float32), np.zeros(0, np.int64)) for _ in images]

    predict_source(predict, src, progress=False)
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], expected)
    rgb = DetectionDataset(src, transform=None, color="rgb")._read(rec)
    np.testing.assert_array_equal(rgb, expected[..., ::-1])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert DetectionDataset(src, transform=None)._read(Record(bad, 2, 1, 1, empty, np.zeros(0, np.int64),
                                                              np.zeros(0, bool))) is None  # fmt: skip
