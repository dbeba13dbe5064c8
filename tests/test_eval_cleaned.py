"""COCO AP and the VOC metric score the same validated ground truth (issue 13, item 6).

The reference is pycocotools itself, run here on the original JSON (a clean one: our ground truth must
change nothing, crowd regions and COCO's segment areas included) or on the JSON with the malformed
annotations removed by the test (a malformed one: ours must equal that, and never crash).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mfssd_deploy.data.sources import open_dataset
from mfssd_deploy.evaluation.coco import STAT_NAMES, coco_metrics
from mfssd_deploy.evaluation.runner import load_coco_results

CAT_IDS = (3, 7, 11)  # not 1..N: category ids are the file's


def make_dataset(seed: int = 0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A clean COCO JSON (crowd regions, segment areas below the box areas, an image without objects)
    and a results list: jittered true positives, duplicates, misses, detections on crowd regions."""
    rng = np.random.default_rng(seed)
    images, anns, results = [], [], []
    for i in range(10):
        w, h = 480, 360
        images.append({"id": 100 + i, "file_name": f"{i}.jpg", "width": w, "height": h})
        for _ in range(int(rng.integers(0 if i == 9 else 2, 7 if i < 9 else 1))):
            bw, bh = rng.uniform(8, 140, 2)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            crowd = int(rng.random() < 0.15)
            cat = int(rng.choice(CAT_IDS))
            anns.append({"id": len(anns) + 1, "image_id": 100 + i, "category_id": cat, "bbox": [x, y, bw, bh],
                         "area": float(bw * bh * rng.uniform(0.5, 0.9)), "iscrowd": crowd})  # fmt: skip
            for _ in range(int(rng.integers(0, 3))):
                j = rng.normal(0, 0.06, 4) * [bw, bh, bw, bh]
                dw, dh = max(2.0, bw + j[2]), max(2.0, bh + j[3])
                dcat = cat if rng.random() < 0.85 else int(rng.choice(CAT_IDS))
                results.append({"image_id": 100 + i, "category_id": dcat, "bbox": [x + j[0], y + j[1], dw, dh],
                                "score": float(rng.uniform(0.2, 1.0))})  # fmt: skip
        for _ in range(2):  # false positives anywhere
            results.append({"image_id": 100 + i, "category_id": int(rng.choice(CAT_IDS)),
                            "bbox": [*rng.uniform(0, 300, 2).tolist(), 40.0, 30.0],
                            "score": float(rng.uniform(0.0, 0.6))})  # fmt: skip
    cats = [{"id": c, "name": f"class{c}"} for c in CAT_IDS]
    return {"images": images, "annotations": anns, "categories": cats}, results


def pycocotools_stats(gt_json: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, float]:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(gt_json)
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {k: float(v) for k, v in zip(STAT_NAMES, ev.stats, strict=True)}


def write(root: Path, gt_json: dict[str, Any], results: list[dict[str, Any]]) -> tuple[Path, Path]:
    (root / "annotations").mkdir(parents=True)
    (root / "val").mkdir()  # images are not read: the detections come from a results file
    (root / "annotations" / "val.json").write_text(json.dumps(gt_json))
    (root / "results.json").write_text(json.dumps(results))
    return root, root / "results.json"


def test_clean_json_with_crowd_regions_scores_like_the_original_file(tmp_path: Path) -> None:
    gt_json, results = make_dataset()
    assert sum(a["iscrowd"] for a in gt_json["annotations"]) >= 3
    root, res_file = write(tmp_path, gt_json, results)
    source = open_dataset(root, "val")
    assert not source.skipped
    ours = coco_metrics(source, load_coco_results(res_file, source))
    with contextlib.redirect_stdout(io.StringIO()):  # the original file as pycocotools reads it
        gt = COCO(str(root / "annotations" / "val.json"))
        ev = COCOeval(gt, gt.loadRes(str(res_file)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    reference = dict(zip(STAT_NAMES, map(float, ev.stats), strict=True))
    assert {k: ours[k] for k in STAT_NAMES} == pytest.approx(reference, abs=1e-12)  # the AI-TOD buckets aside
    # the crowd regions and the segment areas matter here: without them the figures differ
    no_crowd = {**gt_json, "annotations": [a for a in gt_json["annotations"] if not a["iscrowd"]]}
    assert pycocotools_stats(no_crowd, results)["AP"] != pytest.approx(reference["AP"], abs=1e-4)
    box_areas = {**gt_json, "annotations": [{**a, "area": a["bbox"][2] * a["bbox"][3]} for a in gt_json["annotations"]]}
    assert pycocotools_stats(box_areas, results)["APm"] != pytest.approx(reference["APm"], abs=1e-4)


def run_eval(root: Path, res_file: Path, out: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "mfssd_deploy.cli.eval", "--detections", str(res_file), "--data", str(root)]
    return subprocess.run([*cmd, "--json", str(out)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ({"bbox": [30.0, 40.0]}, "bbox is not [x, y, w, h]"),  # pycocotools crashed on it (IndexError)
        ({"bbox": [200.0, 100.0, -60.0, 50.0], "area": 3000.0}, "zero or negative area"),  # moved COCO AP
    ],
    ids=["length-2 bbox", "negative width"],
)
def test_malformed_annotation_reaches_neither_metric(bad: dict[str, Any], problem: str, tmp_path: Path) -> None:
    gt_json, results = make_dataset(seed=1)
    clean = copy.deepcopy(gt_json)
    victim = next(a for a in gt_json["annotations"] if not a["iscrowd"] and a["image_id"] == 101)
    broken = {**victim, "id": 999, **bad}  # an extra, malformed annotation of a class the image has
    gt_json["annotations"].append(broken)
    root, res_file = write(tmp_path, gt_json, results)
    r = run_eval(root, res_file, tmp_path / "e.json")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert "note: 1 malformed annotations were skipped" in r.stderr
    out = json.loads((tmp_path / "e.json").read_text())
    assert out["skipped_annotations"] == 1
    source = open_dataset(root, "val")
    assert len(source.skipped) == 1 and "annotation id 999" in source.skipped[0] and problem in source.skipped[0]
    reference = pycocotools_stats(clean, results)  # pycocotools on the JSON without the bad annotation
    assert {k: out["coco"][k] for k in reference} == pytest.approx(reference, abs=1e-12)  # AI-TOD buckets aside
    assert reference["AP"] > 0.3
