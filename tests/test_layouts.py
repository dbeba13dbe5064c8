"""YOLO and VisDrone layouts beside COCO and VOC, and the AI-TOD size buckets.

The same small dataset is written here, by hand, in all four layouts (never by the reader under test
or by the converter): every layout must give the same records and the same metrics of one fixed set
of detections. VisDrone's ignore regions must score exactly as COCO's crowd regions written for every
class. The converter's YOLO files are read back by supervision, a third-party reader; the AI-TOD
buckets are held to pycocotools' own summary run with each area range set by hand.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from mfssd_deploy.cli import run_cli
from mfssd_deploy.cli.data import main as data_main
from mfssd_deploy.cli.eval import main as eval_main
from mfssd_deploy.data.sources import detect_layout, open_dataset
from mfssd_deploy.data.visdrone import CLASSES
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.evaluation.coco import AITOD_BUCKETS
from mfssd_deploy.evaluation.runner import score_detections

W, H = 320, 240
# per image: (category 1-10, x1, y1, x2, y2) in integer pixels, sizes from 5 to 60 px (every AI-TOD bucket)
OBJECTS = {
    "a": [(1, 10, 10, 15, 16), (4, 40, 30, 100, 80), (4, 200, 100, 212, 110), (10, 150, 150, 175, 170)],
    "b": [(2, 5, 200, 12, 210), (4, 100, 100, 130, 120), (9, 220, 20, 300, 90)],
    "c": [(4, 60, 60, 68, 66), (1, 250, 180, 270, 230), (4, 30, 150, 52, 168), (6, 120, 10, 160, 40)],
}
IGNORE = {"a": [(0, 260, 150, 310, 220)], "b": [(11, 140, 160, 200, 230)], "c": []}  # VisDrone categories 0 and 11


def _image(seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((H, W, 3)) * 255).astype(np.uint8)


def write_all(root: Path) -> dict[str, Path]:
    """The dataset in COCO (with the ignore regions as per-class crowd boxes), VOC, YOLO and VisDrone form."""
    paths = {k: root / k for k in ("coco", "coco_nocrowd", "voc", "yolo", "visdrone")}
    vis = paths["visdrone"] / "VisDrone2019-DET-val"
    for d in (vis / "images", vis / "annotations", paths["voc"] / "JPEGImages", paths["voc"] / "Annotations",
              paths["voc"] / "ImageSets" / "Main", paths["yolo"] / "images" / "val", paths["yolo"] / "labels" / "val",
              paths["coco"] / "val", paths["coco"] / "annotations", paths["coco_nocrowd"] / "val",
              paths["coco_nocrowd"] / "annotations"):  # fmt: skip
        d.mkdir(parents=True)
    images, anns, anns_nocrowd = [], [], []
    for i, (stem, objs) in enumerate(OBJECTS.items(), 1):
        img = _image(i)
        for folder in (vis / "images", paths["voc"] / "JPEGImages", paths["yolo"] / "images" / "val",
                       paths["coco"] / "val", paths["coco_nocrowd"] / "val"):  # fmt: skip
            cv2.imwrite(str(folder / f"{stem}.jpg"), img)
        images.append({"id": i, "file_name": f"{stem}.jpg", "width": W, "height": H})
        vis_lines, yolo_lines = [], []
        root_xml = ET.Element("annotation")
        size = ET.SubElement(root_xml, "size")
        ET.SubElement(size, "width").text, ET.SubElement(size, "height").text = str(W), str(H)
        for c, x1, y1, x2, y2 in objs:
            w, h = x2 - x1, y2 - y1
            a = {"id": len(anns) + 1, "image_id": i, "category_id": c, "bbox": [x1, y1, w, h], "area": w * h,
                 "iscrowd": 0}  # fmt: skip
            anns.append(a)
            anns_nocrowd.append(a)
            vis_lines.append(f"{x1},{y1},{w},{h},1,{c},0,0")
            yolo_lines.append(f"{c - 1} {(x1 + x2) / 2 / W} {(y1 + y2) / 2 / H} {w / W} {h / H}")
            obj = ET.SubElement(root_xml, "object")
            ET.SubElement(obj, "name").text = CLASSES[c - 1]
            bb = ET.SubElement(obj, "bndbox")
            for tag, v in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
                ET.SubElement(bb, tag).text = str(v)
        for cat, x1, y1, x2, y2 in IGNORE[stem]:
            vis_lines.append(f"{x1},{y1},{x2 - x1},{y2 - y1},0,{cat},0,0")
            for c in range(1, 11):  # COCO crowd regions are per class: one for each
                anns.append({"id": len(anns) + 1, "image_id": i, "category_id": c, "bbox": [x1, y1, x2 - x1, y2 - y1],
                             "area": (x2 - x1) * (y2 - y1), "iscrowd": 1})  # fmt: skip
        (vis / "annotations" / f"{stem}.txt").write_text("\n".join(vis_lines) + "\n")
        (paths["yolo"] / "labels" / "val" / f"{stem}.txt").write_text("\n".join(yolo_lines) + "\n")
        ET.ElementTree(root_xml).write(paths["voc"] / "Annotations" / f"{stem}.xml")
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)]
    for key, a in (("coco", anns), ("coco_nocrowd", anns_nocrowd)):
        (paths[key] / "annotations" / "val.json").write_text(json.dumps({"images": images, "annotations": a,
                                                                         "categories": cats}))  # fmt: skip
    (paths["voc"] / "ImageSets" / "Main" / "val.txt").write_text("\n".join(OBJECTS) + "\n")
    (paths["voc"] / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(CLASSES))
    (paths["yolo"] / "data.yaml").write_text(f"path: .\nval: images/val\nnames:\n{names}\n")
    return paths


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_all(tmp_path_factory.mktemp("layouts"))


def detections(source: Any) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A fixed detection set: each object found (jittered), one miss per image, false positives on the
    ignore regions and elsewhere, keyed by the file name's image so every layout gets the same."""
    rng = np.random.default_rng(3)
    by_name: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for stem, objs in OBJECTS.items():
        boxes, scores, labels = [], [], []
        for k, (c, x1, y1, x2, y2) in enumerate(objs):
            if k == 1:
                continue  # a miss
            boxes.append(np.array([x1, y1, x2, y2], float) + rng.normal(0, 1.0, 4))
            scores.append(0.5 + 0.4 * rng.random())
            labels.append(c - 1)
        for _, x1, y1, _x2, _y2 in IGNORE[stem]:
            boxes.append([x1 + 5, y1 + 5, x1 + 30, y1 + 30])  # inside the ignore region
            scores.append(0.95)
            labels.append(3)
        boxes.append([280, 5, 300, 25])  # a false positive
        scores.append(0.7)
        labels.append(0)
        by_name[stem] = (np.asarray(boxes, np.float32), np.asarray(scores, np.float32), np.asarray(labels, np.int64))
    return {r.image_id: by_name[r.path.stem] for r in source.records}


def test_layouts_are_detected(layouts: dict[str, Path]) -> None:
    assert {k: detect_layout(p) for k, p in layouts.items()} == {
        "coco": "coco", "coco_nocrowd": "coco", "voc": "voc", "yolo": "yolo", "visdrone": "visdrone"}  # fmt: skip


def test_four_layouts_give_the_same_records_and_metrics(layouts: dict[str, Path]) -> None:
    srcs = {k: open_dataset(p) for k, p in layouts.items()}
    for k, s in srcs.items():
        assert s.class_names == CLASSES, k
        assert not s.skipped, (k, s.skipped)
    ref = {r.path.stem: r for r in srcs["coco"].records}
    for k, s in srcs.items():
        for r in s.records:
            q = ref[r.path.stem]
            assert (r.width, r.height) == (q.width, q.height), k
            np.testing.assert_allclose(r.boxes, q.boxes, atol=1e-4, err_msg=k)
            assert r.labels.tolist() == q.labels.tolist(), k
    for r in srcs["visdrone"].records:  # ignore regions: COCO's per-class crowd boxes, exactly
        q = ref[r.path.stem]
        np.testing.assert_allclose(r.crowd_boxes, q.crowd_boxes)
        assert r.crowd_labels.tolist() == q.crowd_labels.tolist()
    res = {k: score_detections(s, detections(s)) for k, s in srcs.items()}
    for k in ("voc", "yolo"):
        assert res[k]["voc07_map"] == pytest.approx(res["coco_nocrowd"]["voc07_map"], abs=1e-12), k
        assert res[k]["coco"] == pytest.approx(res["coco_nocrowd"]["coco"], abs=1e-12), k
    assert res["visdrone"]["coco"] == pytest.approx(res["coco"]["coco"], abs=1e-12)
    assert res["visdrone"]["voc07_map"] == pytest.approx(res["coco"]["voc07_map"], abs=1e-12)
    assert res["coco"]["coco"]["AP"] > res["coco_nocrowd"]["coco"]["AP"]  # the ignore regions matter
    assert res["visdrone"]["voc07_map"] > res["coco_nocrowd"]["voc07_map"]  # to the VOC metric too


def test_aitod_buckets_equal_pycocotools_with_the_ranges_set_by_hand(layouts: dict[str, Path]) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from mfssd_deploy.evaluation.coco import gt_dict

    src = open_dataset(layouts["coco_nocrowd"])
    dets = detections(src)
    got = score_detections(src, dets)["coco"]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_dict(src)
        gt.createIndex()
        results = [{"image_id": i, "category_id": int(c) + 1, "score": float(s),
                    "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]}
                   for i, (bs, ss, cs) in dets.items() for b, s, c in zip(bs, ss, cs, strict=True)]  # fmt: skip
        dt = gt.loadRes(results)
        for key, (lo, hi) in AITOD_BUCKETS.items():
            ev = COCOeval(gt, dt, "bbox")
            ev.params.areaRng = [[lo**2, hi**2]] * 4  # summarize() reads stats[0] from the first range
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            assert got[key] == pytest.approx(ev.stats[0], abs=1e-12), key
    assert got["APvt"] > -1 and got["APt"] > -1  # the set has very tiny and tiny objects


def test_converted_yolo_reads_the_same_in_supervision(layouts: dict[str, Path], tmp_path: Path) -> None:
    sv = pytest.importorskip("supervision")
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in layouts["visdrone"].rglob("*") if p.is_file()}
    code = run_cli("mfssd-data", data_main, ["convert", str(layouts["visdrone"]), "--to", "yolo", "--out",
                                             str(tmp_path / "y"), "--json", str(tmp_path / "r.json")])  # fmt: skip
    assert code == 0
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in layouts["visdrone"].rglob("*") if p.is_file()}
    assert after == before  # the source is never written to
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["dropped"]["crowd or ignore regions"] == 2  # the two ignore regions (each kept once per class)
    ds = sv.DetectionDataset.from_yolo(str(tmp_path / "y" / "images" / "val"), str(tmp_path / "y" / "labels" / "val"),
                                       str(tmp_path / "y" / "data.yaml"))  # fmt: skip
    assert list(ds.classes) == list(CLASSES)
    ours = {r.path.name: r for r in open_dataset(layouts["visdrone"]).records}
    n = 0
    for path, _, det in ds:
        r = ours[Path(path).name]
        order = np.lexsort(det.xyxy.T[::-1])
        np.testing.assert_allclose(det.xyxy[order], r.boxes[np.lexsort(r.boxes.T[::-1])], atol=1e-3)
        assert sorted(det.class_id.tolist()) == sorted((r.labels - 1).tolist())
        n += 1
    assert n == 3


def test_convert_refuses_to_write_into_its_source_or_a_full_folder(
    layouts: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for out in (layouts["yolo"] / "inside", layouts["yolo"]):
        assert (
            run_cli("mfssd-data", data_main, ["convert", str(layouts["yolo"]), "--to", "coco", "--out", str(out)]) == 2
        )
        assert "overlaps the source" in capsys.readouterr().err
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("mine")
    assert run_cli("mfssd-data", data_main, ["convert", str(layouts["yolo"]), "--to", "coco", "--out", str(full)]) == 2
    assert "already holds files" in capsys.readouterr().err


def _yolo_copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no names", "has no `names`"),
        ("missing folder", "does not exist"),
        ("class beyond names", "outside the 10 names"),
        ("pixel coordinates", "outside 0..1"),
        ("4 columns", "4 columns"),
        ("6 columns", "6 columns"),
        ("no labels folder", "no labels folder"),
        ("visdrone category 12", "category 12 is outside"),
    ],
)
def test_bad_layout_input_is_one_line_naming_the_file(
    layouts: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str
) -> None:
    import shutil

    if case == "visdrone category 12":
        data = tmp_path / "v"
        shutil.copytree(layouts["visdrone"], data)
        ann = data / "VisDrone2019-DET-val" / "annotations" / "b.txt"
        ann.write_text(ann.read_text() + "1,1,5,5,1,12,0,0\n")
        named = "b.txt"
    else:
        data = _yolo_copy(layouts["yolo"], tmp_path / "y")
        label = data / "labels" / "val" / "a.txt"
        named = "a.txt"
        if case == "no names":
            (data / "data.yaml").write_text("path: .\nval: images/val\n")
            named = "data.yaml"
        elif case == "missing folder":
            (data / "data.yaml").write_text("path: .\nval: images/nope\nnames: [a, b]\n")
            named = "data.yaml"
        elif case == "class beyond names":
            label.write_text("10 0.5 0.5 0.1 0.1\n")
        elif case == "pixel coordinates":
            label.write_text("3 160 120 30 20\n")
        elif case == "4 columns":
            label.write_text("3 0.5 0.5 0.1\n")
        elif case == "6 columns":
            label.write_text("3 0.5 0.5 0.1 0.1 0.9\n")
        elif case == "no labels folder":
            shutil.rmtree(data / "labels")
            named = "labels"
    out = tmp_path / "e.json"
    code = run_cli("mfssd-eval", eval_main, ["--data", str(data), "--json", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert message in lines[0] and named in lines[0], lines[0]
    assert not out.exists()
    with pytest.raises(MfssdError):
        open_dataset(data)


@pytest.mark.parametrize("layout", ["yolo", "visdrone"])
def test_a_layout_goes_through_every_command(
    layout: str, layouts: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """train (a few steps), eval, prune --val, export with the dataset as calibration images, bench --val.
    YOLO: the synthetic set written in its layout, fine-tuning the demo model (same names); VisDrone: the
    hand-written set, its ten classes on a fresh head (--new-head)."""
    from mfssd_deploy.checkpoint import read_checkpoint
    from mfssd_deploy.cli.bench import main as bench_main
    from mfssd_deploy.cli.export import main as export_main
    from mfssd_deploy.cli.prune import main as prune_main
    from mfssd_deploy.cli.train import main as train_main
    from mfssd_deploy.demo_assets import DEMO_MODEL

    if layout == "yolo":
        data = tmp_path / "synth-yolo"
        assert run_cli("mfssd-data", data_main, ["synth", "--out", str(data), "--train", "16", "--val", "8",
                                                 "--seed", "1", "--format", "yolo", "--no-progress"]) == 0  # fmt: skip
        head: list[str] = []
    else:
        data, head = layouts["visdrone"] / "VisDrone2019-DET-val", ["--new-head", "--train-split", "val"]
    run = tmp_path / "run"
    code = run_cli("mfssd-train", train_main, ["--data", str(data), "--finetune", str(DEMO_MODEL), *head, "--out",
                   str(run), "--epochs", "1", "--batch", "2", "--max-steps", "2", "--lr", "0.001", "--workers", "0",
                   "--no-progress", "--eval-images", "4"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    names = read_checkpoint(run / "last.pt")["config"]["class_names"]
    assert tuple(names) == (CLASSES if layout == "visdrone" else open_dataset(data).class_names)
    ev = tmp_path / "e.json"
    assert run_cli("mfssd-eval", eval_main, ["--model", str(run / "last.pt"), "--data", str(data), "--json", str(ev),
                                             "--no-progress", "--max-images", "4"]) == 0  # fmt: skip
    res = json.loads(ev.read_text())
    assert set(AITOD_BUCKETS) <= set(res["coco"]) and res["images"] >= 3
    assert res.get("max_dets") == (500 if layout == "visdrone" else None)
    code = run_cli("mfssd-prune", prune_main, [str(run / "last.pt"), "--ratio", "0.2", "--val", str(data),
                                               "--eval-images", "4", "--out", str(tmp_path / "p.pt")])  # fmt: skip
    assert code == 0 and "mAP@0.5 on" in capsys.readouterr().out
    exp = tmp_path / "export"
    code = run_cli("mfssd-export", export_main, ["--model", str(run / "last.pt"), "--out-dir", str(exp), "--end2end",
                   "--int8", "--calib", str(data), "--min-agreement", "0", "--no-progress"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert (exp / "last.int8.end2end.onnx").is_file()
    out = tmp_path / "b.json"
    code = run_cli("mfssd-bench", bench_main, ["--fps", "--models", str(exp / "last.end2end.onnx"), "--val", str(data),
                   "--val-images", "3", "--batch-sizes", "1", "--iters", "1", "--warmup", "0", "--no-peers",
                   "--no-memory", "-q", "--json", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    rows = json.loads(out.read_text())["rows"]
    assert rows and all(r["map"] is not None and set(r["aitod"]) == set(AITOD_BUCKETS) for r in rows)


def test_max_dets_other_than_100_keeps_every_coco_number(layouts: dict[str, Path]) -> None:
    """pycocotools' summary reads AP at maxDets=100 only; at 500 (VisDrone's) the numbers come from the same
    arrays: with fewer than 100 detections per image they equal the default run's."""
    src = open_dataset(layouts["coco"])
    dets = detections(src)
    base, wide = score_detections(src, dets)["coco"], score_detections(src, dets, max_dets=500)["coco"]
    assert wide["AP"] > 0 and wide == pytest.approx(base, abs=1e-12)


def test_exif_rotated_png_has_the_size_the_reader_gives(tmp_path: Path) -> None:
    from PIL import Image

    from mfssd_deploy.data.imagesize import image_size
    from mfssd_deploy.runtime.inputs import read_image

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    for suffix in (".png", ".jpg"):
        p = tmp_path / f"r{suffix}"
        Image.fromarray(np.zeros((100, 200, 3), np.uint8)).save(p, exif=exif)
        h, w = read_image(p).shape[:2]
        assert image_size(p) == (w, h), suffix


def test_convert_stops_on_a_broken_split_and_keeps_same_named_images(
    layouts: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(layouts["yolo"], bad)
    (bad / "images" / "train").mkdir()
    (bad / "labels" / "train").mkdir()
    shutil.copy(bad / "images" / "val" / "a.jpg", bad / "images" / "train" / "a.jpg")
    (bad / "labels" / "train" / "a.txt").write_text("12 0.5 0.5 0.1 0.1\n")  # class beyond names
    (bad / "data.yaml").write_text((bad / "data.yaml").read_text().replace("val: images/val", "train: images/train\n"
                                                                          "val: images/val"))  # fmt: skip
    code = run_cli("mfssd-data", data_main, ["convert", str(bad), "--to", "coco", "--out", str(tmp_path / "o")])
    assert code == 2 and "outside the 10 names" in capsys.readouterr().err and not (tmp_path / "o").exists()
    twin = tmp_path / "twin"  # one split, two images named a.jpg in two sub-folders
    shutil.copytree(layouts["yolo"], twin)
    for d in ("images", "labels"):
        (twin / d / "val" / "sub").mkdir()
    shutil.copy(twin / "images" / "val" / "b.jpg", twin / "images" / "val" / "sub" / "a.jpg")
    shutil.copy(twin / "labels" / "val" / "b.txt", twin / "labels" / "val" / "sub" / "a.txt")
    assert run_cli("mfssd-data", data_main, ["convert", str(twin), "--to", "coco", "--out", str(tmp_path / "c")]) == 0
    back = open_dataset(tmp_path / "c")
    assert len(back.records) == 4 and len({r.path for r in back.records}) == 4
    assert sum(len(r.boxes) for r in back.records) == sum(len(r.boxes) for r in open_dataset(twin).records)


def test_visdrone_layout_with_classes_of_its_own(layouts: dict[str, Path], tmp_path: Path) -> None:
    """--classes names categories 1..N of a VisDrone-layout set; N+1 is then its "others" (ignored)."""
    import shutil

    data = tmp_path / "v"
    shutil.copytree(layouts["visdrone"], data)
    names = tmp_path / "names.txt"
    names.write_text("".join(f"k{i}\n" for i in range(1, 11)))
    src = open_dataset(data, classes=names)
    ref = open_dataset(layouts["visdrone"])
    assert src.class_names == tuple(f"k{i}" for i in range(1, 11))
    for r, q in zip(src.records, ref.records, strict=True):
        np.testing.assert_array_equal(r.boxes, q.boxes)
        assert r.labels.tolist() == q.labels.tolist() and len(r.crowd_boxes) == len(q.crowd_boxes)
    names.write_text("a\nb\nc\n")  # categories 4 and up are now beyond a 3-class set's 0..4
    with pytest.raises(MfssdError, match=r"outside 0\.\.4"):
        open_dataset(data, classes=names)
