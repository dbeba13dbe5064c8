"""mfssd-detect never writes over an input nor two inputs to one output; video writes are atomic;
a truncated video is reported; --draw-conf only filters drawing; a digit-named folder is a folder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from mfssd_deploy import Detector
from mfssd_deploy.cli import run_cli
from mfssd_deploy.cli.detect import build_parser
from mfssd_deploy.cli.detect import main as detect_main
from mfssd_deploy.runtime.inputs import read_image
from mfssd_deploy.runtime.results import Result
from mfssd_deploy.runtime.streaming import open_frames


def cli(*args: str) -> int:
    return run_cli("mfssd-detect", detect_main, [*args, "--no-progress"])


def tree(folder: Path) -> dict[str, bytes]:
    """Every file below `folder`, by relative path, with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def drawn_bytes(r: Result, image: np.ndarray, min_score: float, suffix: str = ".jpg") -> bytes:
    """The annotated file expected for `r`: only boxes scoring >= min_score, encoded like the CLI."""
    keep = r.scores >= min_score
    kept = Result(r.boxes[keep], r.scores[keep], r.labels[keep], r.class_names, r.image_shape, r.source)
    ok, buf = cv2.imencode(suffix, kept.draw(image))
    assert ok
    return buf.tobytes()


@pytest.fixture()
def nested(artifacts: dict[str, Path], tmp_path: Path) -> Path:
    """in/sub1/img.jpg and in/sub2/img.jpg (different images, same name) and in/top.jpg."""
    imgs = sorted(artifacts["imgs"].iterdir())
    root = tmp_path / "in"
    for rel, src in (("sub1/img.jpg", imgs[0]), ("sub2/img.jpg", imgs[1]), ("top.jpg", imgs[2])):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(src.read_bytes())
    return root


@pytest.mark.parametrize("pattern", ["{root}", "{root}/**/*.jpg", "{root}/**"])
def test_outputs_mirror_the_source_tree(artifacts: dict[str, Path], nested: Path, tmp_path: Path,
                                        pattern: str) -> None:  # fmt: skip
    out = tmp_path / "out"
    assert cli(pattern.format(root=nested), "--model", str(artifacts["e2e"]), "--save-dir", str(out)) == 0
    rels = ["sub1/img.jpg", "sub2/img.jpg", "top.jpg"]
    written = tree(out)
    assert sorted(written) == sorted([*rels, "detections.json"])
    expected = Detector(artifacts["e2e"])([str(nested / r) for r in rels])
    for rel, r in zip(rels, expected, strict=True):
        assert written[rel] == drawn_bytes(r, read_image(nested / rel), 0.25), rel
    data = json.loads(written["detections.json"])
    assert [Path(i["source"]).relative_to(nested).as_posix() for i in data["images"]] == rels


def test_glob_outputs_are_relative_to_its_fixed_prefix(artifacts: dict[str, Path], nested: Path,
                                                       tmp_path: Path) -> None:  # fmt: skip
    out = tmp_path / "out"
    assert cli(str(nested / "sub*" / "img.jpg"), "--model", str(artifacts["e2e"]), "--save-dir", str(out)) == 0
    assert sorted(tree(out)) == ["detections.json", "sub1/img.jpg", "sub2/img.jpg"]


def test_plan_never_escapes_the_save_dir(tmp_path: Path) -> None:
    from mfssd_deploy.cli.detect import plan_outputs

    files = [tmp_path / "in" / "a" / ".." / ".." / "other" / "x.jpg", tmp_path / "other" / "sub" / "y.png"]
    plan = plan_outputs(files, tmp_path / "in", tmp_path / "out")
    assert plan == {str(files[0]): tmp_path / "out" / "x.jpg", str(files[1]): tmp_path / "out" / "sub" / "y.png"}
    odd = plan_outputs([tmp_path / "in" / "anim.gif"], tmp_path / "in", tmp_path / "out")
    assert odd == {str(tmp_path / "in" / "anim.gif"): tmp_path / "out" / "anim.gif.jpg"}


def test_draw_conf_filters_the_drawing_and_not_the_json(artifacts: dict[str, Path], tmp_path: Path) -> None:
    imgs = sorted(artifacts["imgs"].iterdir())
    expected = Detector(artifacts["e2e"])([str(p) for p in imgs])
    assert min(float(r.scores.min()) for r in expected) < 0.25  # the model's 0.01 keeps low scores
    out = tmp_path / "default"
    assert cli(str(artifacts["imgs"]), "--model", str(artifacts["e2e"]), "--save-dir", str(out)) == 0
    data = json.loads((out / "detections.json").read_text())
    for p, r, rec in zip(imgs, expected, data["images"], strict=True):
        assert (out / p.name).read_bytes() == drawn_bytes(r, read_image(p), 0.25)
        assert len(rec["detections"]) == len(r) and min(d["score"] for d in rec["detections"]) < 0.25
    assert data["conf"] == pytest.approx(0.01) and data["draw_conf"] == 0.25
    thr = float(expected[0].scores[3])  # a threshold that draws exactly some of image 0's boxes
    out2 = tmp_path / "custom"
    args = [str(artifacts["imgs"]), "--model", str(artifacts["e2e"]), "--save-dir", str(out2), "--draw-conf", str(thr)]
    assert cli(*args) == 0
    for p, r in zip(imgs, expected, strict=True):
        got = (out2 / p.name).read_bytes()
        assert got == drawn_bytes(r, read_image(p), thr)
    assert (out2 / imgs[0].name).read_bytes() != drawn_bytes(expected[0], read_image(imgs[0]), 0.0)
    assert cli(str(artifacts["imgs"]), "--model", str(artifacts["e2e"]), "--draw-conf", "2") == 2


def test_save_dir_or_json_that_would_overwrite_a_source_is_refused(
    artifacts: dict[str, Path], nested: Path, tmp_path: Path, video: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = ["--model", str(artifacts["e2e"])]
    before = tree(nested)
    (tmp_path / "link").symlink_to(nested, target_is_directory=True)
    cases = [
        [str(nested), "--save-dir", str(nested)],  # the source folder itself
        [str(nested), "--save-dir", str(tmp_path / "link")],  # the same folder through a symlink
        [str(nested / "**" / "*.jpg"), "--save-dir", str(nested)],
        [str(nested / "top.jpg"), "--save-dir", str(nested)],
        [str(nested), "--no-save", "--json", str(nested / "top.jpg")],
        [str(nested), "--save-dir", str(tmp_path / "ok"), "--json", str(tmp_path / "ok" / "top.jpg")],
    ]
    for args in cases:
        code = cli(*args, *model)
        err = capsys.readouterr().err.strip()
        assert code == 2, args
        assert len(err.splitlines()) == 1 and err.startswith("mfssd-detect: error:") and "Traceback" not in err
        assert "source" in err or "annotated output" in err, err
    assert tree(nested) == before  # nothing overwritten, nothing added
    vid_dir = tmp_path / "vids"
    vid_dir.mkdir()
    clip = vid_dir / "clip.mp4"
    clip.write_bytes(video.read_bytes())
    assert cli(str(clip), *model, "--save-dir", str(vid_dir)) == 2
    assert "overwrite the source video" in capsys.readouterr().err
    assert clip.read_bytes() == video.read_bytes() and sorted(p.name for p in vid_dir.iterdir()) == ["clip.mp4"]


def test_a_save_dir_beside_mirrored_sources_is_refused(artifacts: dict[str, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """in/a.jpg mirrored into SAVE_DIR=in/sub lands on in/sub/a.jpg, which is itself a source."""
    img = sorted(artifacts["imgs"].iterdir())[0].read_bytes()
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    (root / "a.jpg").write_bytes(img)
    (root / "sub" / "a.jpg").write_bytes(img[:-10] + b"different!")
    before = tree(root)
    assert cli(str(root), "--model", str(artifacts["e2e"]), "--save-dir", str(root / "sub")) == 2
    assert "would overwrite the source image" in capsys.readouterr().err
    assert tree(root) == before


def test_save_dir_that_is_a_file_is_one_line(artifacts: dict[str, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    f = tmp_path / "results.txt"
    f.write_text("keep me")
    for save in (f, f / "sub"):
        assert cli(str(artifacts["imgs"]), "--model", str(artifacts["e2e"]), "--save-dir", str(save)) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--save-dir" in err, err
    assert f.read_text() == "keep me"


def _failing_draw(monkeypatch: pytest.MonkeyPatch, at: int, exc: BaseException) -> None:
    calls = iter(range(10**6))
    real = Result.draw

    def draw(self: Result, image: np.ndarray, min_score: float = 0.0) -> np.ndarray:
        if next(calls) == at:
            raise exc
        return real(self, image, min_score)

    monkeypatch.setattr(Result, "draw", draw)


def test_a_failed_video_leaves_no_output(artifacts: dict[str, Path], video: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    out = tmp_path / "vout"
    _failing_draw(monkeypatch, 3, RuntimeError("disk on fire"))
    with pytest.raises(RuntimeError, match="disk on fire"):
        detect_main([str(video), "--model", str(artifacts["e2e"]), "--save-dir", str(out), "--no-progress"])
    assert list(out.iterdir()) == []  # neither a half video under the final name nor temporary files


def test_ctrl_c_keeps_a_finalised_video_and_the_json(artifacts: dict[str, Path], video: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    out = tmp_path / "vout"
    _failing_draw(monkeypatch, 3, KeyboardInterrupt())
    assert cli(str(video), "--model", str(artifacts["e2e"]), "--save-dir", str(out)) == 130
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4", "detections.json"]
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    data = json.loads((out / "detections.json").read_text())
    assert data["interrupted"] is True and len(data["images"]) == 3


def _decodable_frames(path: Path) -> Iterator[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    while True:
        ok, img = cap.read()
        if not ok:
            return
        yield img


def test_truncated_video_is_reported(artifacts: dict[str, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    full = tmp_path / "full.avi"
    writer = cv2.VideoWriter(str(full), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (160, 120))
    rng = np.random.default_rng(0)
    for _ in range(20):
        writer.write((rng.random((120, 160, 3)) * 255).astype(np.uint8))
    writer.release()
    cut = tmp_path / "cut.avi"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    announced = int(cv2.VideoCapture(str(cut)).get(cv2.CAP_PROP_FRAME_COUNT))
    readable = sum(1 for _ in _decodable_frames(cut))
    assert announced == 20 and 0 < readable < 20  # the header still says 20; half the frames are gone

    frames = list(Detector(artifacts["e2e"]).stream(cut))
    assert [f.result is not None for f in frames] == [True] * readable + [False]
    assert f"read {readable} of the 20 frames" in (frames[-1].error or "")

    out = tmp_path / "out"
    assert cli(str(cut), "--model", str(artifacts["e2e"]), "--save-dir", str(out)) == 1
    printed = capsys.readouterr()
    assert f"read {readable} of the 20 frames" in printed.out + printed.err
    report = json.loads((out / "detections.json").read_text())
    assert len(report["images"]) == readable and len(report["skipped"]) == 1
    assert f"read {readable} of the 20" in report["skipped"][0]
    assert int(cv2.VideoCapture(str(out / "cut.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == readable
    # a complete video is not reported
    assert cli(str(full), "--model", str(artifacts["e2e"]), "--save-dir", str(tmp_path / "o2"), "--no-save") == 0


def test_a_folder_named_with_digits_is_a_folder(artifacts: dict[str, Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    (tmp_path / "2024").mkdir()
    img = sorted(artifacts["imgs"].iterdir())[0]
    (tmp_path / "2024" / "a.jpg").write_bytes(img.read_bytes())
    src = open_frames("2024")
    assert src.kind == "images" and src.files == (Path("2024/a.jpg"),)
    assert cli("2024", "--model", str(artifacts["e2e"]), "--save-dir", "out") == 0
    assert sorted(tree(tmp_path / "out")) == ["a.jpg", "detections.json"]


def test_camera_option(artifacts: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    model = ["--model", str(artifacts["e2e"])]
    assert cli("--camera", "97", *model) == 2
    assert "cannot open camera 97" in capsys.readouterr().err
    assert cli("97", *model) == 2  # a bare number that is no path: still a camera, for compatibility
    assert "cannot open camera 97" in capsys.readouterr().err
    for args in ([], ["x.jpg", "--camera", "0"]):
        assert cli(*args, *model) == 2
        err = capsys.readouterr().err
        assert "--camera" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # nothing written for a source that could not be opened


def test_help_states_each_default_once() -> None:
    text = " ".join(build_parser().format_help().split())
    assert "default: None" not in text and "(default: None)" not in text
    assert "--camera N" in text and "--draw-conf" in text and "(default: 0.25)" in text
    assert "refused" in text and "0.01" in text
    for action in build_parser()._actions:
        assert (action.help or "").count("default") <= 1, action.dest
