"""The bundled demo models (unpruned and pruned): artifacts agree, INT8 and pruning stay within budget,
and every export path works on the pruned structure unchanged."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import onnx
import pytest

from mfssd_deploy import Detector
from mfssd_deploy.checkpoint import read_checkpoint
from mfssd_deploy.demo_assets import DEMO_MODEL, DEMO_MODEL_CARD, PRUNED_DEMO_MODEL, PRUNED_MODEL_CARD, sample_images

from fake_tensorrt import make_fake_tensorrt
from helpers import same

MODELS = {"demo": DEMO_MODEL, "pruned": PRUNED_DEMO_MODEL}


@pytest.fixture(scope="module")
def val_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mfssd_deploy.data.synth import generate

    data = tmp_path_factory.mktemp("demo") / "data"
    generate(data, 100, 200, seed=1, show_progress=False)  # the same fresh set `make demo` makes
    return data


@pytest.fixture(scope="module", params=sorted(MODELS))
def exported(
    request: pytest.FixtureRequest, val_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    from mfssd_deploy.exporters.pipeline import ExportRequest, run_export

    model = MODELS[request.param]
    out = tmp_path_factory.mktemp(request.param)
    report = run_export(
        ExportRequest(model=model, out_dir=out, int8=True, calib=val_data / "train", calib_num=100, val=val_data,
                      parity_images=sample_images())
    )  # fmt: skip
    return {"name": request.param, "model": model, "report": report, "dir": out}


@pytest.mark.parametrize(("model", "card"), [(DEMO_MODEL, DEMO_MODEL_CARD), (PRUNED_DEMO_MODEL, PRUNED_MODEL_CARD)])
def test_bundled_files(model: Path, card: Path) -> None:
    assert model.stat().st_size <= 10 * 2**20
    text = card.read_text()
    assert "mfssd-train" in text and "--seed" in text and "mAP@0.5" in text
    ck = read_checkpoint(model)
    assert ck["config"]["variant"] == "mfssd_bn" and ck["config"]["class_names"][0] == "circle"
    assert len(sample_images()) >= 3


def n_params(ck: dict[str, Any]) -> int:
    return sum(t.numel() for k, t in ck["state_dict"].items() if "running" not in k and "num_batches" not in k)


def test_pruned_model_is_a_third_smaller() -> None:
    demo, pruned = read_checkpoint(DEMO_MODEL), read_checkpoint(PRUNED_DEMO_MODEL)
    assert n_params(pruned) <= 0.67 * n_params(demo)
    assert pruned["pruning"]["method"].startswith("network slimming")


def test_pt_raw_end2end_agree_on_samples(exported: dict[str, Any]) -> None:
    x, stem, model = exported["dir"], exported["model"].stem, exported["model"]
    paths = [str(p) for p in sample_images()]
    pt = Detector(model)(paths)
    assert sum(len(r) for r in Detector(model, conf=0.5)(paths)) >= len(paths)  # it finds objects
    same(pt, Detector(x / f"{stem}.onnx")(paths), iou=0.99, tol=1e-4)
    same(pt, Detector(x / f"{stem}.end2end.onnx")(paths), iou=0.99, tol=1e-4)
    assert all(a["parity"]["ok"] for a in exported["report"]["artifacts"] if a["precision"] == "fp32")


def test_int8_within_accuracy_budget(exported: dict[str, Any]) -> None:
    acc = exported["report"]["accuracy"]
    assert acc["int8_map_drop_points"] <= 0.5, acc
    fp32 = next(v for v in acc["results"].values() if v["precision"] == "fp32")
    assert fp32["voc07_map"] >= 0.6  # on images the model never saw
    exported["fp32_map"] = fp32["voc07_map"]


def test_tensorrt_paths(exported: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Contract: every artifact passes the parser check of each TensorRT line, and builds via the fake."""
    from mfssd_deploy.exporters.tensorrt_build import BuildRequest, build_engine
    from mfssd_deploy.exporters.trt_lint import lint, tables

    arts = exported["report"]["artifacts"]
    for a in arts:
        model = onnx.load(a["path"])
        for line in tables():
            assert lint(model, line) == [], (a["path"], line)
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt("8.6.1"))
    e2e = {a["precision"]: Path(a["path"]) for a in arts if a["layout"] == "end2end"}
    files = {"fp32": e2e["fp32"], "int8": e2e["int8-qdq"]}
    request = BuildRequest(onnx=files, out=tmp_path / "e.engine", precision="int8")
    meta = build_engine(request, gpu=("NVIDIA GeForce GTX 1080 Ti", (6, 1)))
    assert meta["config"]["widths"] == read_checkpoint(exported["model"])["config"]["widths"]


def test_pruned_accuracy_within_one_point(val_data: Path) -> None:
    from mfssd_deploy.data.sources import open_dataset
    from mfssd_deploy.evaluation.runner import detector_predictor, evaluate

    source = open_dataset(val_data, "val")
    dets = {k: Detector(m) for k, m in MODELS.items()}
    maps = {k: evaluate(detector_predictor(d), source, class_names=d.class_names, coco=False,
                        progress=False)["voc07_map"] for k, d in dets.items()}  # fmt: skip
    assert 100 * (maps["demo"] - maps["pruned"]) <= 1.0, maps
