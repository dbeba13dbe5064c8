"""Sources of frames (video file, camera, folder, glob, image) and the prefetching pipeline of det.stream.

A background thread decodes and pre-processes the next batch into a bounded queue while the
current batch runs, so decoding overlaps inference; the queue bound keeps memory flat.
"""

from __future__ import annotations

import glob
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mfssd_deploy.errors import MfssdError
from mfssd_deploy.runtime.inputs import IMAGE_SUFFIXES, image_files, read_image
from mfssd_deploy.runtime.results import Result

log = logging.getLogger("mfssd_deploy")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


@dataclass
class Frame:
    index: int
    source: str  # file path, or "video.mp4#frame" / "camera0#frame"
    image: np.ndarray | None  # BGR uint8; None when the item could not be read
    result: Result | None = None
    error: str | None = None  # why the item was skipped (or, for a video that ended early, how many frames were lost)


@dataclass
class Source:
    kind: str  # "video" | "camera" | "images"
    name: str
    frames: Callable[[], Iterator[Frame]]
    length: int | None  # known number of items (None for cameras)
    fps: float | None = None
    files: tuple[Path, ...] = ()  # the image files, in order (kind "images")
    root: Path | None = None  # the folder `files` are relative to: the folder, the glob's fixed prefix, the parent


def open_frames(source: str | int | os.PathLike[str]) -> Source:
    """Video file, camera index, folder of images, glob pattern or one image file.

    A path that exists is always a path (a folder named `2024` is a folder); a camera is an int. A
    string of digits that is no existing path still opens that camera, for compatibility.
    """
    if isinstance(source, int):
        return _capture_source(source, "camera", f"camera{source}")
    text = os.fspath(source)
    p = Path(text)
    if not p.exists():
        if _has_magic(text):
            files = sorted(Path(f) for f in glob.glob(text, recursive=True) if Path(f).is_file())
            if not files:
                raise MfssdError(f"no files match {text}")
            return _files_source(files, text, _glob_root(text))
        if text.isdigit():
            return _capture_source(int(text), "camera", f"camera{int(text)}")
        raise MfssdError(f"source not found: {p} (a video, a camera index, a folder, a glob or an image)")
    if p.is_dir():
        files = image_files(p)
        if not files:
            raise MfssdError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {p}")
        return _files_source(files, p.name, p)
    if p.suffix.lower() in VIDEO_SUFFIXES:
        return _capture_source(str(p), "video", p.name)
    return _files_source([p], p.name, p.parent)


def _has_magic(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _glob_root(pattern: str) -> Path:
    """The leading folders of a glob pattern that hold no wildcard: `imgs/**/*.jpg` -> `imgs`."""
    fixed: list[str] = []
    for part in Path(pattern).parts[:-1]:
        if _has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _files_source(files: list[Path], name: str, root: Path) -> Source:
    def frames() -> Iterator[Frame]:
        for i, f in enumerate(files):
            try:
                yield Frame(i, str(f), read_image(f))
            except MfssdError as exc:
                yield Frame(i, str(f), None, error=str(exc))

    return Source("images", name, frames, len(files), files=tuple(files), root=root)


def _open_capture(target: str | int, kind: str) -> Any:
    cap = cv2.VideoCapture(target)
    if not cap.isOpened():
        cap.release()
        what = f"camera {target}" if kind == "camera" else f"video {target}"
        raise MfssdError(f"cannot open {what} with OpenCV (missing device, or a codec OpenCV lacks)")
    return cap


def _capture_source(target: str | int, kind: str, name: str) -> Source:
    # Probe now (a bad source fails here, in one line) and release: a Source that is never iterated
    # holds no device, so opening the same camera again (as mfssd-detect does) finds it free.
    cap = _open_capture(target, kind)
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if kind == "video" else 0
    fps = cap.get(cv2.CAP_PROP_FPS) or None
    cap.release()

    def frames() -> Iterator[Frame]:
        cap = _open_capture(target, kind)
        i = 0
        try:
            while True:
                ok, img = cap.read()
                if not ok:
                    break
                yield Frame(i, f"{name}#{i}", img)
                i += 1
        finally:
            cap.release()
        if count > 0 and i < count:
            # A truncated or corrupt file stops decoding early: never let that pass as the whole video.
            lost = f"video ended early: read {i} of the {count} frames its header announces"
            yield Frame(
                i, f"{name}#{i}", None, error=f"{lost} (truncated or corrupt file); frames {i}-{count - 1} lost"
            )

    return Source(kind, name, frames, count if count > 0 else None, fps)


_END = object()


def prefetch(
    frames: Iterator[Frame], batch: int, prepare: Callable[[list[np.ndarray]], np.ndarray], queue_size: int = 2
) -> Iterator[tuple[list[Frame], np.ndarray | None]]:
    """Batches of readable frames with their preprocessed array, produced by a background thread.

    Unreadable items travel in their own batch with no array, so the caller can report them in order.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=max(1, queue_size))
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            pending: list[Frame] = []
            for f in frames:
                if stop.is_set():
                    return
                if f.image is None:
                    if pending and not put((pending, prepare([p.image for p in pending if p.image is not None]))):
                        return
                    pending = []
                    if not put(([f], None)):
                        return
                    continue
                pending.append(f)
                if len(pending) == batch:
                    if not put((pending, prepare([p.image for p in pending if p.image is not None]))):
                        return
                    pending = []
            if pending:
                put((pending, prepare([p.image for p in pending if p.image is not None])))
        except BaseException as exc:  # surfaced in the consumer
            put(exc)
        finally:
            put(_END)

    thread = threading.Thread(target=work, name="mfssd-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
