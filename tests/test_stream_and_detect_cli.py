"""det.stream over folders, globs and videos; mfssd-detect writes annotated outputs and reports bad files."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from mfssd_deploy import Detector
from mfssd_deploy.cli import run_cli
from mfssd_deploy.cli.detect import main as detect_main
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.runtime.streaming import prefetch

from helpers import same


def test_stream_folder_and_glob_equal_batch_call(artifacts: dict[str, Path]) -> None:
    det = Detector(artifacts["e2e"], batch_size=3)
    paths = sorted(artifacts["imgs"].iterdir())
    expected = det([str(p) for p in paths])
    for source in (artifacts["imgs"], str(artifacts["imgs"] / "*.jpg")):
        frames = list(det.stream(source, batch=3))
        assert [f.source for f in frames] == [str(p) for p in paths]
        same([f.result for f in frames], expected, iou=0.9999, tol=1e-6)  # type: ignore[misc]


def test_stream_video(artifacts: dict[str, Path], video: Path) -> None:
    det = Detector(artifacts["e2e"])
    frames = list(det.stream(video, batch=4))
    assert len(frames) == 8 and frames[3].source == "clip.mp4#3"
    cap = cv2.VideoCapture(str(video))
    decoded = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        decoded.append(img)
    same([f.result for f in frames], det(decoded), iou=0.9999, tol=1e-6)  # type: ignore[misc]


def test_stream_reports_bad_files_in_order(artifacts: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, p in enumerate(sorted(artifacts["imgs"].iterdir())):
        (folder / f"{i}.jpg").write_bytes(p.read_bytes())
    (folder / "1b.jpg").write_text("not an image")
    frames = list(Detector(artifacts["e2e"], batch_size=2).stream(folder))
    assert [Path(f.source).name for f in frames] == ["0.jpg", "1.jpg", "1b.jpg", "2.jpg", "3.jpg"]
    assert frames[2].result is None and "not an image" in (frames[2].error or "")
    assert all(f.result is not None for i, f in enumerate(frames) if i != 2)


def test_stream_errors(artifacts: dict[str, Path], tmp_path: Path) -> None:
    det = Detector(artifacts["e2e"])
    with pytest.raises(MfssdError, match="source not found"):
        list(det.stream(tmp_path / "nope"))
    with pytest.raises(MfssdError, match="no files match"):
        list(det.stream(str(tmp_path / "*.png")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MfssdError, match="no images"):
        list(det.stream(tmp_path / "empty"))


def test_prefetch_surfaces_worker_errors() -> None:
    from mfssd_deploy.runtime.streaming import Frame

    def boom(images: list[np.ndarray]) -> np.ndarray:
        raise ValueError("decode failed")

    frames = iter([Frame(0, "a", np.zeros((4, 4, 3), np.uint8))])
    with pytest.raises(ValueError, match="decode failed"):
        list(prefetch(frames, 2, boom))


def test_detect_cli_folder_and_video(artifacts: dict[str, Path], video: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for p in sorted(artifacts["imgs"].iterdir()):
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "out"
    args = [str(folder), "--model", str(artifacts["e2e"]), "--save-dir", str(out), "--conf", "0.2", "--no-progress"]
    code = run_cli("mfssd-detect", detect_main, args)
    assert code == 1  # something was skipped
    assert sorted(p.name for p in out.iterdir()) == ["0.jpg", "1.jpg", "2.jpg", "3.jpg", "detections.json"]
    data = json.loads((out / "detections.json").read_text())
    assert len(data["images"]) == 4 and len(data["skipped"]) == 1 and "broken.jpg" in data["skipped"][0]
    vout = tmp_path / "vout"
    assert detect_main([str(video), "--model", str(artifacts["e2e"]), "--save-dir", str(vout), "--no-progress"]) == 0
    cap = cv2.VideoCapture(str(vout / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 8
