"""Hostile inputs, generated here: each gives a correct result or a one-line MfssdError naming it.

Never a traceback, a hang or a written-over file. "Correct" is checked against the Detector run on
pixels this test builds itself (the exact array it wrote to a lossless file, or OpenCV's own decode
for lossy ones), so a reader that silently changes pixels, orientation or shape fails here.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import signal
import struct
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import pytest
import torch

from mfssd_deploy.cli import run_cli
from mfssd_deploy.cli.detect import main as detect_main
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.runtime.detector import Detector

from helpers import same

RNG = np.random.default_rng(7)


@pytest.fixture(autouse=True)
def _no_hang() -> Iterator[None]:
    """A case that runs past 60 s is a hang: fail it instead of stalling the suite."""

    def boom(*_: Any) -> None:
        raise TimeoutError("hostile input hung for 60 s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def det(artifacts: dict[str, Path]) -> Detector:
    return Detector(artifacts["e2e"])


def scene(h: int = 240, w: int = 320, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = (rng.random((h, w, 3)) * 60).astype(np.uint8)
    cv2.circle(img, (w // 3, h // 2), max(2, min(h, w) // 5), (0, 0, 255), -1)
    cv2.rectangle(img, (w // 2, h // 4), (w // 2 + max(2, w // 6), h // 4 + max(2, h // 6)), (255, 255, 0), -1)
    return img


def one_line_error(exc: pytest.ExceptionInfo[MfssdError], name: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg.strip(), msg
    assert name in msg, f"the error does not name the input {name!r}: {msg}"


# ---------------------------------------------------------------- image files
# (file name, writer -> expected BGR array or None for "must be refused")


def _png(path: Path, arr: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", arr)
    assert ok
    path.write_bytes(buf.tobytes())


def _write_decodable(ext: str, arr: np.ndarray, params: list[int] | None = None) -> Callable[[Path], np.ndarray]:
    def write(path: Path) -> np.ndarray:
        ok, buf = cv2.imencode(ext, arr, params or [])
        assert ok
        path.write_bytes(buf.tobytes())
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)  # OpenCV's own decode is the reference for lossy formats

    return write


def _lossless(arr: np.ndarray, expected: np.ndarray, ext: str = ".png") -> Callable[[Path], np.ndarray]:
    def write(path: Path) -> np.ndarray:
        ok, buf = cv2.imencode(ext, arr)
        assert ok
        path.write_bytes(buf.tobytes())
        return expected

    return write


def _exif_jpeg(orientation: int) -> Callable[[Path], np.ndarray]:
    """A JPEG whose pixels are stored unrotated with an EXIF orientation tag; expected = what viewers show."""

    def write(path: Path) -> np.ndarray:
        stored = scene(120, 200, seed=orientation)
        ok, buf = cv2.imencode(".jpg", stored, [cv2.IMWRITE_JPEG_QUALITY, 98])
        assert ok
        data = buf.tobytes()
        # big-endian TIFF header, one IFD entry: tag 0x0112 (Orientation), SHORT, count 1, value; no next IFD
        tiff = b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">H", 1)
        tiff += struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + b"\x00\x00\x00\x00"
        app1 = b"Exif\x00\x00" + tiff
        path.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:])
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        return {6: np.rot90(decoded, -1), 8: np.rot90(decoded, 1), 3: decoded[::-1, ::-1], 1: decoded}[orientation]

    return write


def _gray16() -> Callable[[Path], np.ndarray]:
    arr = (RNG.random((90, 130)) * 65535).astype(np.uint16)
    return _lossless(arr, np.repeat((arr // 257).astype(np.uint8)[..., None], 3, axis=2))


def _bgra() -> Callable[[Path], np.ndarray]:
    bgr = scene(100, 140, seed=3)
    alpha = (RNG.random((100, 140)) * 255).astype(np.uint8)
    return _lossless(np.dstack([bgr, alpha]), bgr)


def _bgr16() -> Callable[[Path], np.ndarray]:
    arr = (RNG.random((80, 120, 3)) * 65535).astype(np.uint16)
    return _lossless(arr, (arr // 257).astype(np.uint8))


def _gray8() -> Callable[[Path], np.ndarray]:
    g = scene(70, 90, seed=4)[..., 2].copy()
    return _lossless(g, np.repeat(g[..., None], 3, axis=2))


def _cmyk_jpeg(path: Path) -> np.ndarray:
    from PIL import Image

    rgb = scene(100, 160, seed=5)[..., ::-1]
    buf = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(buf, "JPEG", quality=95)
    path.write_bytes(buf.getvalue())
    ref = cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_COLOR)
    assert ref is not None and ref.shape == (100, 160, 3)
    return ref


def _animated_gif(path: Path) -> np.ndarray:
    from PIL import Image

    frames = [Image.fromarray(scene(60, 80, seed=s)[..., ::-1]) for s in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    ref = cv2.imread(str(path), cv2.IMREAD_COLOR)  # OpenCV decodes the first frame
    assert ref is not None
    return ref


def _renamed_png_as_jpg(path: Path) -> np.ndarray:
    arr = scene(64, 64, seed=6)
    _png(path, arr)
    return arr


GOOD_FILES: dict[str, Callable[[Path], np.ndarray]] = {
    "plain.jpg": _write_decodable(".jpg", scene()),
    "plain.png": _lossless(scene(seed=1), scene(seed=1)),
    "tiny-1x1.png": _lossless(np.full((1, 1, 3), 200, np.uint8), np.full((1, 1, 3), 200, np.uint8)),
    "strip-10x3000.png": _lossless(scene(10, 3000), scene(10, 3000)),
    "tall-3000x10.png": _lossless(scene(3000, 10), scene(3000, 10)),
    "huge-8000x6000.jpg": _write_decodable(".jpg", scene(6000, 8000), [cv2.IMWRITE_JPEG_QUALITY, 70]),
    "gray8.png": _gray8(),
    "gray16.png": _gray16(),
    "bgr16.png": _bgr16(),
    "bgr16.tiff": (lambda arr: _lossless(arr, (arr // 257).astype(np.uint8), ".tiff"))(
        (RNG.random((50, 70, 3)) * 65535).astype(np.uint16)
    ),
    "alpha.png": _bgra(),
    "cmyk.jpg": _cmyk_jpeg,
    "exif-rot6.jpg": _exif_jpeg(6),
    "exif-rot8.jpg": _exif_jpeg(8),
    "exif-rot3.jpg": _exif_jpeg(3),
    "animated.gif": _animated_gif,
    "lossless.webp": _lossless(scene(seed=8), scene(seed=8), ".webp"),
    "lossy.webp": _write_decodable(".webp", scene(seed=9), [cv2.IMWRITE_WEBP_QUALITY, 80]),
    "image.bmp": _lossless(scene(seed=10), scene(seed=10), ".bmp"),
    "png-named.jpg": _renamed_png_as_jpg,
    "ünïcødé 画像.png": _lossless(scene(seed=11), scene(seed=11)),
    "UPPER.JPG": _write_decodable(".jpg", scene(seed=12)),
}


@pytest.mark.parametrize("name", list(GOOD_FILES))
def test_odd_but_valid_image_files(name: str, det: Detector, tmp_path: Path) -> None:
    path = tmp_path / name
    expected = GOOD_FILES[name](path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    got = det(path)[0]
    want = det(np.ascontiguousarray(expected))[0]
    assert got.image_shape == expected.shape[:2]
    same([got], [want])
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest  # read, never written


def _truncated_jpeg(path: Path) -> None:
    ok, buf = cv2.imencode(".jpg", scene())
    assert ok
    path.write_bytes(buf.tobytes()[:200])


BAD_FILES: dict[str, Callable[[Path], None]] = {
    "empty.jpg": lambda p: p.write_bytes(b""),
    "truncated.jpg": _truncated_jpeg,
    "text-renamed.png": lambda p: p.write_text("not an image at all\n"),
    "random-bytes.jpg": lambda p: p.write_bytes(RNG.integers(0, 256, 4096, dtype=np.uint8).tobytes()),
    "zip-renamed.png": lambda p: zipfile.ZipFile(p, "w").writestr("a.txt", "x"),
    "folder.jpg": lambda p: p.mkdir(),
    "missing.jpg": lambda p: None,
    "header-only.png": lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_broken_image_files_are_one_line_errors(name: str, det: Detector, tmp_path: Path) -> None:
    path = tmp_path / name
    BAD_FILES[name](path)
    with pytest.raises(MfssdError) as exc:
        det(path)
    one_line_error(exc, name)


# ---------------------------------------------------------------- arrays

BGR = scene(96, 128, seed=20)


def _readonly() -> np.ndarray:
    a = BGR.copy()
    a.flags.writeable = False
    return a


GOOD_ARRAYS: dict[str, tuple[Callable[[], np.ndarray], np.ndarray]] = {
    "uint8-bgr": (lambda: BGR.copy(), BGR),
    "read-only": (_readonly, BGR),
    "non-contiguous": (lambda: np.repeat(BGR, 2, axis=1)[:, ::2], BGR),
    "fortran-order": (lambda: np.asfortranarray(BGR), BGR),
    "negative-strides": (lambda: BGR[::-1, ::-1][::-1, ::-1], BGR),
    "gray-hw": (lambda: BGR[..., 1].copy(), np.repeat(BGR[..., 1:2], 3, axis=2)),
    "gray-hw1": (lambda: BGR[..., 1:2].copy(), np.repeat(BGR[..., 1:2], 3, axis=2)),
    "bgra": (lambda: np.dstack([BGR, np.full(BGR.shape[:2], 9, np.uint8)]), BGR),
    "uint16": (lambda: BGR.astype(np.uint16) * 257, BGR),
    "1x1": (lambda: BGR[:1, :1].copy(), BGR[:1, :1]),
}


@pytest.mark.parametrize("name", list(GOOD_ARRAYS))
def test_odd_but_valid_arrays(name: str, det: Detector) -> None:
    make, expected = GOOD_ARRAYS[name]
    arr = make()
    before = arr.copy()
    got = det(arr)[0]
    same([got], [det(np.ascontiguousarray(expected))[0]])
    assert got.image_shape == expected.shape[:2]
    assert np.array_equal(arr, before)  # the caller's array is never modified


def _float_with(value: float) -> np.ndarray:
    a = BGR.astype(np.float32)
    a[3, 4, 1] = value
    return a


BAD_ARRAYS: dict[str, Callable[[], Any]] = {
    **{
        f"dtype-{dt}": (lambda dt=dt: BGR.astype(dt))
        for dt in ("int8", "int16", "int32", "int64", "uint32", "uint64", "float16", "float32", "float64", "bool")
    },
    "complex64": lambda: BGR.astype(np.complex64),
    "object": lambda: BGR.astype(object),
    "nan": lambda: _float_with(float("nan")),
    "inf": lambda: _float_with(float("inf")),
    "chw": lambda: np.ascontiguousarray(BGR.transpose(2, 0, 1)),
    "nhwc": lambda: BGR[None],
    "2-channel": lambda: BGR[..., :2].copy(),
    "5-channel": lambda: np.dstack([BGR, BGR[..., :2]]),
    "empty": lambda: np.zeros((0, 0, 3), np.uint8),
    "empty-rows": lambda: np.zeros((0, 10, 3), np.uint8),
    "1-d": lambda: BGR.reshape(-1),
    "0-d": lambda: np.array(5, np.uint8),
    "list-of-lists": lambda: BGR[:4, :4].tolist(),
    "none": lambda: None,
    "bytes": lambda: b"\xff\xd8\xff",
}


@pytest.mark.parametrize("name", list(BAD_ARRAYS))
def test_bad_arrays_are_one_line_errors(name: str, det: Detector) -> None:
    with pytest.raises(MfssdError) as exc:
        det(BAD_ARRAYS[name]())
    one_line_error(exc, "image 0")


def test_a_bad_item_in_a_list_is_named_by_its_index(det: Detector) -> None:
    with pytest.raises(MfssdError) as exc:
        det([BGR, BGR, BGR.astype(np.float64)])
    one_line_error(exc, "image 2")


# ---------------------------------------------------------------- models


def _foreign_onnx(path: Path) -> None:
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])
    g = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "foreign", [x], [y])
    onnx.save(onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 17)]), path)


def _with_meta(src: Path, meta: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        m = onnx.load(src)
        for p in m.metadata_props:
            if p.key == "mfssd":
                p.value = meta
        onnx.save(m, path)

    return write


class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {EVIL_MARK}",))


EVIL_MARK = Path(os.environ.get("TMPDIR", "/tmp")) / f"mfssd-evil-{os.getpid()}"


def _evil_pickle(path: Path) -> None:
    torch.save({"format": "mfssd-checkpoint/1", "config": {}, "state_dict": {}, "x": _Evil()}, path)


def _foreign_state_dict(path: Path) -> None:
    torch.save(torch.nn.Linear(3, 2).state_dict(), path)


def _plain_pickle(path: Path) -> None:
    path.write_bytes(pickle.dumps({"a": 1}))


def model_cases(artifacts: dict[str, Path]) -> dict[str, Callable[[Path], None]]:
    good = artifacts["e2e"]
    meta = json.loads(next(p.value for p in onnx.load(good).metadata_props if p.key == "mfssd"))
    no_config = json.dumps({k: v for k, v in meta.items() if k != "config"})
    bad_layout = json.dumps({**meta, "layout": "sideways"})
    bad_config = json.dumps({**meta, "config": {"input_size": "big"}})
    return {
        "empty.onnx": lambda p: p.write_bytes(b""),
        "random.onnx": lambda p: p.write_bytes(RNG.integers(0, 256, 10_000, dtype=np.uint8).tobytes()),
        "truncated.onnx": lambda p: p.write_bytes(good.read_bytes()[:5000]),
        "foreign.onnx": _foreign_onnx,
        "meta-not-json.onnx": _with_meta(good, "{not json"),
        "meta-no-config.onnx": _with_meta(good, no_config),
        "meta-bad-layout.onnx": _with_meta(good, bad_layout),
        "meta-bad-config.onnx": _with_meta(good, bad_config),
        "folder.onnx": lambda p: p.mkdir(),
        "empty.pt": lambda p: p.write_bytes(b""),
        "random.pt": lambda p: p.write_bytes(RNG.integers(0, 256, 10_000, dtype=np.uint8).tobytes()),
        "foreign-state-dict.pt": _foreign_state_dict,
        "code-pickle.pt": _evil_pickle,
        "plain-pickle.pt": _plain_pickle,
        "random.engine": lambda p: p.write_bytes(RNG.integers(0, 256, 1000, dtype=np.uint8).tobytes()),
        "model.tflite": lambda p: p.write_bytes(b"TFL3"),
        "missing.onnx": lambda p: None,
    }


MODEL_NAMES = [
    "empty.onnx", "random.onnx", "truncated.onnx", "foreign.onnx", "meta-not-json.onnx", "meta-no-config.onnx",
    "meta-bad-layout.onnx", "meta-bad-config.onnx", "folder.onnx", "empty.pt", "random.pt", "foreign-state-dict.pt",
    "code-pickle.pt", "plain-pickle.pt", "random.engine", "model.tflite", "missing.onnx",
]  # fmt: skip


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_bad_models_are_one_line_errors(name: str, artifacts: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / name
    model_cases(artifacts)[name](path)
    EVIL_MARK.unlink(missing_ok=True)
    with pytest.raises(MfssdError) as exc:
        Detector(path)
    one_line_error(exc, name)
    assert not EVIL_MARK.exists(), "loading a model file ran code"


# ---------------------------------------------------------------- folders and the CLI


def test_a_folder_mixing_everything(artifacts: dict[str, Path], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    src = tmp_path / "mixed"
    (src / "sub").mkdir(parents=True)
    good = {}
    for i, name in enumerate(["plain.png", "gray16.png", "alpha.png", "exif-rot6.jpg", "ünïcødé 画像.png"]):
        target = src / ("sub" if i % 2 else "") / name
        good[target] = GOOD_FILES[name](target)
    for name in ["empty.jpg", "truncated.jpg", "text-renamed.png", "folder.jpg"]:
        BAD_FILES[name](src / name)
    (src / "notes.txt").write_text("ignored: not an image suffix")
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    code = run_cli("mfssd-detect", detect_main, [str(src), "--model", str(artifacts["e2e"]), "--save-dir", str(out),
                                                 "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    report = json.loads((out / "detections.json").read_text())
    assert len(report["images"]) == len(good) and len(report["skipped"]) == 3  # folder.jpg is a folder, not a file
    det = Detector(artifacts["e2e"])
    by_source = {Path(r["source"]): r for r in report["images"]}
    for path, expected in good.items():
        ref = det(np.ascontiguousarray(expected))[0]
        size = by_source[path]["image_size"]
        assert (size["height"], size["width"]) == expected.shape[:2]
        assert len(by_source[path]["detections"]) == len(ref)
    assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == before  # no source file touched


def _video(path: Path, frames: int, fourcc: str = "MJPG") -> None:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), 10.0, (96, 64))
    assert w.isOpened()
    for i in range(frames):
        w.write(scene(64, 96, seed=i))
    w.release()


VIDEO_CASES: dict[str, Callable[[Path], None]] = {
    "random.mp4": lambda p: p.write_bytes(RNG.integers(0, 256, 20_000, dtype=np.uint8).tobytes()),
    "empty.avi": lambda p: p.write_bytes(b""),
    "text.mkv": lambda p: p.write_text("a video? no"),
}


@pytest.mark.parametrize("name", list(VIDEO_CASES))
def test_corrupt_videos_are_one_line_errors(name: str, det: Detector, tmp_path: Path) -> None:
    path = tmp_path / name
    VIDEO_CASES[name](path)
    with pytest.raises(MfssdError) as exc:
        list(det.stream(path))
    one_line_error(exc, name)


def test_a_valid_video_yields_every_frame(det: Detector, tmp_path: Path) -> None:
    path = tmp_path / "ok.avi"
    _video(path, 7)
    frames = list(det.stream(path, batch=3))
    assert [f.index for f in frames] == list(range(7))
    cap = cv2.VideoCapture(str(path))
    for f in frames:
        ok, img = cap.read()
        assert ok and f.result is not None
        same([f.result], [det(img)[0]])


def test_a_truncated_video_is_reported(artifacts: dict[str, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    full = tmp_path / "full.avi"
    _video(full, 40)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    code = run_cli("mfssd-detect", detect_main, [str(cut), "--model", str(artifacts["e2e"]), "--save-dir",
                                                 str(tmp_path / "out"), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and "40" in err  # frames read vs the 40 expected
