"""The bundled end2end ONNX exports of the demo model: what a lean install runs by default.

They are exported from the bundled checkpoint (MODEL_CARD.md has the command) and must not drift from
it: their metadata names the checkpoint's sha256, and the FP32 file detects what the checkpoint does.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest depends on tomli before 3.11
    import tomli as tomllib

from mfssd_deploy import Detector
from mfssd_deploy.checkpoint import read_checkpoint
from mfssd_deploy.demo_assets import DEMO_MODEL, DEMO_MODEL_CARD, DEMO_ONNX, DEMO_ONNX_INT8, demo_onnx, sample_images
from mfssd_deploy.evaluation.voc import box_iou_np

from helpers import same

ROOT = Path(__file__).resolve().parents[1]
PRECISION = {DEMO_ONNX: "fp32", DEMO_ONNX_INT8: "int8-qdq"}  # int8-qdq: s8 activations (TensorRT-compatible)


def metadata(path: Path) -> dict[str, Any]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(json.loads(session.get_modelmeta().custom_metadata_map["mfssd"]))


@pytest.mark.parametrize("path", [DEMO_ONNX, DEMO_ONNX_INT8], ids=lambda p: p.name)
def test_bundled_onnx_is_exported_from_the_bundled_checkpoint(path: Path) -> None:
    meta = metadata(path)
    assert meta["source_sha256"] == hashlib.sha256(DEMO_MODEL.read_bytes()).hexdigest()
    assert meta["config"] == read_checkpoint(DEMO_MODEL)["config"]
    assert (meta["layout"], meta["precision"]) == ("end2end", PRECISION[path])
    assert path.stat().st_size <= 10 * 2**20
    assert demo_onnx(int8=path == DEMO_ONNX_INT8) == path


def test_fp32_onnx_detects_what_the_checkpoint_detects() -> None:
    """The default model differs between installs (.pt with torch, this file without): same detections."""
    images = [str(p) for p in sample_images()]
    onnx_results, pt_results = Detector(DEMO_ONNX)(images), Detector(DEMO_MODEL)(images)
    assert sum(len(r) for r in pt_results) > 0
    same(onnx_results, pt_results)


def test_int8_onnx_agrees_with_fp32_on_confident_detections() -> None:
    """Every confident (>= 0.5) detection of one has a match (>= 0.3, same class, IoU >= 0.5) in the
    other: the margin keeps scores that INT8 moves across one threshold from counting as misses."""
    images = [str(p) for p in sample_images()]
    int8, fp32 = Detector(DEMO_ONNX_INT8, conf=0.3)(images), Detector(DEMO_ONNX, conf=0.3)(images)
    assert sum(int((r.scores >= 0.5).sum()) for r in fp32) >= 4
    for a, b in [(x, y) for i, f in zip(int8, fp32, strict=True) for x, y in ((i, f), (f, i))]:
        ious = box_iou_np(a.boxes.astype(np.float64), b.boxes.astype(np.float64))
        for k in np.nonzero(a.scores >= 0.5)[0]:
            assert ((ious[k] >= 0.5) & (b.labels == a.labels[k])).any(), (a.source, a.boxes[k], a.scores[k])


def test_model_card_records_the_export_command() -> None:
    text = DEMO_MODEL_CARD.read_text()
    assert DEMO_ONNX.name in text and DEMO_ONNX_INT8.name in text
    cmd = re.search(r"^mfssd-export .*$", text, re.M)
    assert cmd is not None
    for flag in ("--model", DEMO_MODEL.name, "--end2end", "--int8", "--calib", "--name mfssd_bn_w025_synth"):
        assert flag in cmd.group(0)


def test_package_data_ships_the_onnx_files() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    package = ROOT / "mfssd_deploy"
    shipped = {p for pattern in patterns["mfssd_deploy"] for p in package.glob(pattern)}
    assert {DEMO_ONNX, DEMO_ONNX_INT8, DEMO_MODEL} <= shipped
