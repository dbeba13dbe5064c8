"""The bundled demo model: its artifacts agree, INT8 stays within budget, the demo command runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from mfssd_deploy import Detector
from mfssd_deploy.bundled import DEMO_MODEL, DEMO_MODEL_CARD, demo_model, sample_images
from mfssd_deploy.checkpoint import read_checkpoint

from helpers import same


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    from mfssd_deploy.data.synth import generate
    from mfssd_deploy.exporters.pipeline import ExportRequest, run_export

    tmp = tmp_path_factory.mktemp("demo")
    data = tmp / "data"
    generate(data, 100, 200, seed=1, show_progress=False)  # the same fresh set `make demo` makes
    report = run_export(
        ExportRequest(model=demo_model(), out_dir=tmp / "x", int8=True, calib=data / "train", calib_num=100,
                      val=data, parity_images=sample_images())
    )  # fmt: skip
    return {"report": report, "dir": tmp / "x", "data": data}


def test_bundled_files() -> None:
    assert DEMO_MODEL.stat().st_size <= 10 * 2**20
    card = DEMO_MODEL_CARD.read_text()
    assert "mfssd-train" in card and "--seed" in card and "mAP@0.5" in card
    ck = read_checkpoint(DEMO_MODEL)
    assert ck["config"]["variant"] == "mfssd_bn" and ck["config"]["class_names"][0] == "circle"
    assert len(sample_images()) >= 3


def test_pt_raw_end2end_agree_on_samples(demo_export: dict[str, object]) -> None:
    x = Path(str(demo_export["dir"]))
    stem = DEMO_MODEL.stem
    paths = [str(p) for p in sample_images()]
    pt = Detector(DEMO_MODEL)(paths)
    assert sum(len(r) for r in Detector(DEMO_MODEL, conf=0.5)(paths)) >= len(paths)  # it finds objects
    same(pt, Detector(x / f"{stem}.onnx")(paths), iou=0.99, tol=1e-4)
    same(pt, Detector(x / f"{stem}.end2end.onnx")(paths), iou=0.99, tol=1e-4)
    report = demo_export["report"]
    assert all(a["parity"]["ok"] for a in report["artifacts"] if a["precision"] == "fp32")  # type: ignore[index]


def test_int8_within_accuracy_budget(demo_export: dict[str, object]) -> None:
    acc = demo_export["report"]["accuracy"]  # type: ignore[index]
    assert acc["int8_map_drop_points"] <= 0.5, acc
    fp32 = next(v for v in acc["results"].values() if v["precision"] == "fp32")
    assert fp32["voc07_map"] >= 0.6  # the demo model on images it never saw
