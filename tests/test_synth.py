from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mfssd_deploy.cli.data import main as data_main
from mfssd_deploy.data.synth import CLASSES, generate, make_image


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate(out, 60, 10, seed=3, show_progress=False)
    return out


def test_deterministic_for_a_seed(tmp_path: Path, synth: Path) -> None:
    again = tmp_path / "again"
    generate(again, 60, 10, seed=3, show_progress=False)
    for rel in ("annotations/train.json", "annotations/val.json", "train/000007.jpg", "val/000003.jpg"):
        assert (again / rel).read_bytes() == (synth / rel).read_bytes(), rel
    a, _ = make_image(3, "train", 5)
    b, _ = make_image(4, "train", 5)
    assert a.shape != b.shape or not np.array_equal(a, b)


def test_coco_json_is_consistent_and_varied(synth: Path) -> None:
    coco = json.loads((synth / "annotations" / "train.json").read_text())
    assert [c["name"] for c in coco["categories"]] == list(CLASSES) and len(CLASSES) >= 6
    sizes = {(im["width"], im["height"]) for im in coco["images"]}
    assert len(sizes) >= 4 and len({w / h for w, h in sizes}) >= 3
    by_id = {im["id"]: im for im in coco["images"]}
    areas = []
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        im = by_id[a["image_id"]]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= im["width"] and y + h <= im["height"]
        areas.append(w * h)
    areas_np = np.array(areas)
    assert (areas_np < 32**2).mean() >= 0.40  # at least 40% small objects (COCO definition)
    assert ((areas_np >= 32**2) & (areas_np < 96**2)).mean() > 0.2 and (areas_np >= 96**2).mean() > 0.04
    assert len({a["category_id"] for a in coco["annotations"]}) == len(CLASSES)


def test_cli_prints_histogram(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        data_main(
            [
                "synth",
                "--out",
                str(tmp_path / "d"),
                "--train",
                "4",
                "--val",
                "2",
                "--no-progress",
                "--json",
                str(tmp_path / "h.json"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "small (<32^2)" in out and "train" in out and "val" in out
    hist = json.loads((tmp_path / "h.json").read_text())
    assert sum(hist["train"].values()) == len(
        json.loads((tmp_path / "d/annotations/train.json").read_text())["annotations"]
    )


def test_cli_large_writes_the_large_frame_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`mfssd-data synth --large`: 1920x1080 / 1280x720 COCO frames, many mostly small objects, byte for byte the
    set generate_large (the tiling benchmark's) writes for the same seed, and again for a second run."""
    from mfssd_deploy.data.synth import generate_large

    args = ["synth", "--large", "--val", "3", "--seed", "1", "--no-progress"]
    assert data_main([*args, "--out", str(tmp_path / "cli")]) == 0
    assert data_main([*args, "--out", str(tmp_path / "cli2")]) == 0
    assert "small (<32^2)" in capsys.readouterr().out
    generate_large(tmp_path / "lib", 3, seed=1, show_progress=False)
    assert not (tmp_path / "cli" / "train").exists()  # --large: no training split unless asked
    for rel in ("annotations/val.json", "val/000000.jpg", "val/000002.jpg"):
        ref = (tmp_path / "lib" / rel).read_bytes()
        assert (tmp_path / "cli" / rel).read_bytes() == ref == (tmp_path / "cli2" / rel).read_bytes(), rel
    coco = json.loads((tmp_path / "cli" / "annotations" / "val.json").read_text())
    assert {(im["width"], im["height"]) for im in coco["images"]} <= {(1920, 1080), (1280, 720)}
    areas = np.array([a["bbox"][2] * a["bbox"][3] for a in coco["annotations"]])
    assert len(areas) >= 3 * 40 and (areas < 32**2).mean() > 0.6 and np.sqrt(areas).min() >= 8
    other = tmp_path / "seed2"
    assert data_main(["synth", "--large", "--val", "1", "--seed", "2", "--no-progress", "--out", str(other)]) == 0
    assert (other / "val/000000.jpg").read_bytes() != (tmp_path / "cli/val/000000.jpg").read_bytes()
