"""Annotation loading: COCO JSON and VOC XML, malformed annotations reported, skipped and counted."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mfssd_deploy.data.sources import load_coco, load_voc, open_dataset
from mfssd_deploy.data.torch_dataset import DetectionDataset, collate
from mfssd_deploy.data.transforms import eval_transforms, train_transforms
from mfssd_deploy.errors import MfssdError

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def write_coco(root: Path) -> Path:
    (root / "annotations").mkdir(parents=True)
    (root / "val").mkdir()
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(root / "val" / name), np.full((100, 200, 3), 127, np.uint8))
    coco = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 200, "height": 100},
            {"id": 2, "file_name": "b.jpg", "width": 200, "height": 100},
        ],
        "categories": [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 7, "bbox": [10, 10, 50, 40], "iscrowd": 0},
            {"id": 11, "image_id": 1, "category_id": 3, "bbox": [150, 50, 60, 20], "iscrowd": 0},  # outside
            {"id": 12, "image_id": 2, "category_id": 3, "bbox": [5, 5, 0, 10], "iscrowd": 0},  # zero area
            {
                "id": 13,
                "image_id": 2,
                "category_id": 99,
                "bbox": [5, 5, 10, 10],
                "iscrowd": 0,
            },  # unknown class
            {"id": 14, "image_id": 2, "category_id": 3, "bbox": [100, 20, 99.6, 80.5], "iscrowd": 0},  # edge
            {"id": 15, "image_id": 2, "category_id": 7, "bbox": [0, 0, 30, 30], "iscrowd": 1},  # crowd
        ],
    }
    (root / "annotations" / "val.json").write_text(json.dumps(coco))
    return root


def test_coco_malformed_are_reported_skipped_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = write_coco(tmp_path)
    with caplog.at_level(logging.WARNING, "mfssd_deploy.data"):
        src = open_dataset(root, "val")
    assert src.class_names == ("dog", "cat")  # sorted by category id
    assert len(src.skipped) == 3
    joined = " | ".join(src.skipped)
    assert "annotation id 11 of a.jpg" in joined and "outside the 200x100 image" in joined
    assert "annotation id 12 of b.jpg" in joined and "zero or negative area" in joined
    assert "annotation id 13 of b.jpg: unknown category_id 99" in joined
    assert "val.json" in caplog.text and "annotation id 11" in caplog.text
    a, b = src.records
    np.testing.assert_allclose(a.boxes, [[10, 10, 60, 50]])
    assert a.labels.tolist() == [2]  # cat is the second category -> label 2
    np.testing.assert_allclose(b.boxes, [[100, 20, 199.6, 100]], rtol=1e-6)  # within 1 px of the edge: clipped


def test_coco_crowd_regions_and_areas_are_kept_apart_for_evaluation(tmp_path: Path) -> None:
    """Crowd regions never reach training boxes but do reach COCO evaluation (detections on them are
    ignored there), validated like any annotation; the file's "area" (a segment's) is kept per box."""
    root = write_coco(tmp_path)
    data = json.loads((root / "annotations" / "val.json").read_text())
    data["annotations"][0]["area"] = 1234.5  # id 10: a segment area, not the box's 50 x 40
    data["annotations"] += [
        {"id": 16, "image_id": 1, "category_id": 3, "bbox": [20, 30, 40], "iscrowd": 1},  # malformed crowd
        {"id": 17, "image_id": 1, "category_id": 3, "bbox": [100, 10, 50, 60], "area": 2500, "iscrowd": 1},
    ]
    (root / "annotations" / "val.json").write_text(json.dumps(data))
    src = open_dataset(root, "val")
    a, b = src.records
    assert len(src.skipped) == 4 and "annotation id 16 of a.jpg: bbox is not [x, y, w, h]" in " | ".join(src.skipped)
    np.testing.assert_allclose(a.boxes, [[10, 10, 60, 50]])  # training boxes: no crowd
    assert a.areas is not None and a.areas.tolist() == [1234.5]
    np.testing.assert_allclose(a.crowd_boxes, [[100, 10, 150, 70]])
    assert a.crowd_labels.tolist() == [1] and a.crowd_areas.tolist() == [2500.0]  # dog: category 3 -> label 1
    np.testing.assert_allclose(b.crowd_boxes, [[0, 0, 30, 30]])
    assert b.crowd_labels.tolist() == [2] and np.isnan(b.crowd_areas).all()  # no "area" in the file
    voc = load_voc(write_voc(tmp_path / "VOC2007"), "test").records[0]
    assert voc.crowd_boxes.shape == (0, 4) and voc.areas is None


def write_voc(root: Path) -> Path:
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True)
    (root / "ImageSets/Main/test.txt").write_text("000001\n000002\n")
    cv2.imwrite(str(root / "JPEGImages/000001.jpg"), np.zeros((50, 80, 3), np.uint8))
    cv2.imwrite(str(root / "JPEGImages/000002.jpg"), np.zeros((50, 80, 3), np.uint8))
    obj = "<object><name>{}</name><difficult>{}</difficult><bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>"  # noqa: E501
    xml1 = (
        "<annotation><size><width>80</width><height>50</height></size>"
        + obj.format("dog", 0, 1, 1, 20, 30)
        + obj.format("cat", 1, 30, 10, 60, 40)
        + obj.format("unicorn", 0, 1, 1, 5, 5)
        + "</annotation>"
    )
    (root / "Annotations/000001.xml").write_text(xml1)
    (root / "Annotations/000002.xml").write_text("<annotation><size><width>80")  # truncated XML
    return root


def test_voc_difficult_and_malformed(tmp_path: Path) -> None:
    src = load_voc(write_voc(tmp_path / "VOC2007"), "test")
    assert len(src.records) == 1 and len(src.skipped) == 2
    assert "unknown class 'unicorn'" in " ".join(src.skipped) and "000002.xml" in " ".join(src.skipped)
    r = src.records[0]
    np.testing.assert_allclose(r.boxes, [[0, 0, 20, 30], [29, 9, 60, 40]])  # 1-based inclusive -> 0-based
    assert r.labels.tolist() == [12, 8] and r.difficult.tolist() == [False, True]
    assert open_dataset(tmp_path, "test").records[0].image_id == r.image_id  # VOCdevkit layout found


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MfssdError, match="dataset not found"):
        open_dataset(tmp_path / "nope")
    with pytest.raises(MfssdError, match="no 'val' annotations under"):
        open_dataset(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(MfssdError, match="not a COCO detection JSON"):
        load_coco(bad, tmp_path)


def test_torch_dataset_outputs_and_unreadable_image(tmp_path: Path) -> None:
    root = write_coco(tmp_path)
    (root / "val" / "b.jpg").write_bytes(b"not a jpeg")
    src = open_dataset(root, "val")
    ds = DetectionDataset(src, train_transforms(300, MEAN, STD, zoom_out=2.0))
    torch.manual_seed(0)
    image, target = ds[1]  # b.jpg cannot be read: a.jpg is served instead, the epoch goes on
    assert ds.unreadable == 1
    assert image.shape == (3, 300, 300) and image.dtype == torch.float32
    assert target["boxes"].min() >= 0 and target["boxes"].max() <= 1
    ds_eval = DetectionDataset(src, eval_transforms(300, MEAN, STD))
    images, targets = collate([ds_eval[0], ds_eval[0]])
    assert images.shape == (2, 3, 300, 300)
    torch.testing.assert_close(targets[0]["boxes"], torch.tensor([[10 / 200, 10 / 100, 60 / 200, 50 / 100]]))
