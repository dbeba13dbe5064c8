"""A user's own data (issue: classes by name, nothing to learn from, nothing overwritten).

Each case builds its dataset here, from the synthetic set, and checks the command against an
independent reference: the same data in its original form, pycocotools run directly on the files,
or the files' hashes before and after. Every case failed (a wrong score with exit 0, or a file
written over) before classes were matched by name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mfssd_deploy.checkpoint import read_checkpoint
from mfssd_deploy.cli import run_cli
from mfssd_deploy.cli.data import main as data_main
from mfssd_deploy.cli.detect import main as detect_main
from mfssd_deploy.cli.eval import main as eval_main
from mfssd_deploy.cli.prune import main as prune_main
from mfssd_deploy.cli.train import main as train_main
from mfssd_deploy.data.synth import generate
from mfssd_deploy.demo_assets import DEMO_MODEL

NAMES = ("circle", "ring", "triangle", "square", "star", "cross")  # the synthetic set's, in id order
PERMUTED_IDS = {1: 40, 2: 7, 3: 23, 4: 3, 5: 11, 6: 18}  # same names, other ids: another sorted order


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 training and 16 held-out images (seed 1: what the demo model never saw)."""
    root = tmp_path_factory.mktemp("user-data") / "synth"
    generate(root, 24, 16, seed=1, show_progress=False)
    return root


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}  # fmt: skip


def permute_categories(src: Path, dst: Path, splits: tuple[str, ...] = ("val",)) -> Path:
    """A copy of `src` whose `splits` list the same category names under other ids, in reverse order."""
    shutil.copytree(src, dst)
    for split in splits:
        f = dst / "annotations" / f"{split}.json"
        d = json.loads(f.read_text())
        d["categories"] = [{**c, "id": PERMUTED_IDS[c["id"]]} for c in reversed(d["categories"])]
        for a in d["annotations"]:
            a["category_id"] = PERMUTED_IDS[a["category_id"]]
        f.write_text(json.dumps(d))
    return dst


def cli(main: Any, prog: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = run_cli(prog, main, argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(err: str, *needles: str) -> None:
    lines = [ln for ln in err.strip().splitlines() if "error:" in ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture
def in_tmp(tmp_path: Path) -> Iterator[Path]:
    cwd = os.getcwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(cwd)


# ------------------------------------------------------------------ 1. classes by name, not by position


def test_eval_model_matches_classes_by_name(synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The demo model on the same val set with its categories renumbered: the same score, class by class
    (before: refused although the names are exactly the model's)."""
    perm = permute_categories(synth, tmp_path / "perm")
    code, _, err = cli(eval_main, "mfssd-eval", ["--data", str(synth), "--json", str(tmp_path / "a.json"),
                                                 "--no-progress"], capsys)  # fmt: skip
    assert code == 0, err
    code, _, err = cli(eval_main, "mfssd-eval", ["--data", str(perm), "--json", str(tmp_path / "b.json"),
                                                 "--no-progress"], capsys)  # fmt: skip
    assert code == 0, err
    a, b = (json.loads((tmp_path / f"{k}.json").read_text()) for k in "ab")
    assert a["voc07_map"] > 0.5
    assert b["voc07_map"] == pytest.approx(a["voc07_map"], abs=1e-9)
    assert b["coco"]["AP"] == pytest.approx(a["coco"]["AP"], abs=1e-9)
    for name in NAMES:
        assert b["per_class"][name]["ap07"] == pytest.approx(a["per_class"][name]["ap07"], abs=1e-9)


def test_folder_to_json_writes_categories_by_name(
    synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """examples/folder_to_json.py on a set whose ids differ from the model's positions, scored by
    pycocotools directly on the user's own files (before: 0.034 instead of 0.870, exit 0)."""
    import contextlib
    import io
    import sys

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    perm = permute_categories(synth, tmp_path / "perm")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    try:
        from folder_to_json import main as f2j
    finally:
        sys.path.pop(0)
    ann = perm / "annotations" / "val.json"
    dets = tmp_path / "dets.json"
    code, _, err = cli(f2j, "folder_to_json.py", [str(perm / "val"), "--annotations", str(ann), "--out",
                                                  str(dets)], capsys)  # fmt: skip
    assert code == 0, err
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann))
        ev = COCOeval(gt, gt.loadRes(str(dets)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[1] > 0.5, ev.stats  # AP50 on the user's own ids
    code, _, err = cli(eval_main, "mfssd-eval", ["--detections", str(dets), "--data", str(perm), "--json",
                                                 str(tmp_path / "e.json")], capsys)  # fmt: skip
    assert code == 0, err
    assert json.loads((tmp_path / "e.json").read_text())["coco"]["AP"] == pytest.approx(ev.stats[0], abs=1e-9)


def test_training_validation_matches_by_name(synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Fine-tuning at LR 0 with a val.json whose ids differ from train.json: the in-training mAP is the
    model's real one (before: 0.033 instead of ~0.85, and best.pt chosen on it)."""
    perm = permute_categories(synth, tmp_path / "perm")
    code, _, err = cli(eval_main, "mfssd-eval", ["--data", str(synth), "--json", str(tmp_path / "ref.json"),
                                                 "--no-coco", "--no-progress"], capsys)  # fmt: skip
    assert code == 0, err
    ref = json.loads((tmp_path / "ref.json").read_text())["voc07_map"]
    code, _, err = cli(train_main, "mfssd-train", [
        "--data", str(perm), "--finetune", str(DEMO_MODEL), "--out", str(tmp_path / "run"), "--epochs", "1",
        "--batch", "8", "--lr", "0", "--max-steps", "1", "--workers", "0", "--no-progress", "--amp", "off",
        "--json", str(tmp_path / "t.json")], capsys)  # fmt: skip
    assert code == 0, err
    got = json.loads((tmp_path / "t.json").read_text())["best_map"]
    assert got == pytest.approx(ref, abs=0.05) and got > 0.5, (got, ref)  # one step of BN statistics moved


# ------------------------------------------------------------------ 2. fine-tuning on other classes


def renamed(src: Path, dst: Path, names: tuple[str, ...]) -> Path:
    shutil.copytree(src, dst)
    for split in ("train", "val"):
        f = dst / "annotations" / f"{split}.json"
        d = json.loads(f.read_text())
        d["categories"] = [{**c, "name": names[c["id"] - 1]} for c in d["categories"]]
        f.write_text(json.dumps(d))
    return dst


def test_finetune_refuses_other_class_names(synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Six classes named car, person, ...: refused with both lists and the way out, nothing written
    (before: exit 0 and the checkpoint still called cars 'circle')."""
    data = renamed(synth, tmp_path / "cars", ("car", "person", "bus", "bike", "truck", "van"))
    out = tmp_path / "run"
    code, _, err = cli(train_main, "mfssd-train", ["--data", str(data), "--finetune", str(DEMO_MODEL), "--out",
                                                   str(out), "--max-steps", "1", "--workers", "0"], capsys)  # fmt: skip
    assert code == 2
    one_line_error(err, "class names differ", "car", "circle", "--new-head")
    assert not out.exists() or not any(out.iterdir())


def test_finetune_new_head_keeps_backbone(synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--new-head: the data's names and count in the checkpoint, every non-head tensor carried over
    (checked at LR 0 against the demo checkpoint's own tensors, BN statistics aside)."""
    import torch

    names = ("car", "person", "bus", "bike")
    data = renamed(synth, tmp_path / "four", (*names, "truck", "van"))
    for split in ("train", "val"):  # four classes: drop truck and van
        f = data / "annotations" / f"{split}.json"
        d = json.loads(f.read_text())
        d["categories"] = d["categories"][:4]
        d["annotations"] = [a for a in d["annotations"] if a["category_id"] <= 4]
        f.write_text(json.dumps(d))
    out = tmp_path / "run"
    code, _, err = cli(train_main, "mfssd-train", [
        "--data", str(data), "--finetune", str(DEMO_MODEL), "--new-head", "--out", str(out), "--epochs", "1",
        "--batch", "8", "--lr", "0", "--max-steps", "1", "--workers", "0", "--val-split", "", "--amp", "off",
        "--no-progress"], capsys)  # fmt: skip
    assert code == 0, err
    ckpt, demo = read_checkpoint(out / "last.pt"), read_checkpoint(DEMO_MODEL)
    assert tuple(ckpt["config"]["class_names"]) == names and ckpt["config"]["num_classes"] == 5
    for k, v in demo["state_dict"].items():
        if k.startswith("head.conf"):
            assert ckpt["state_dict"][k].shape[0] != v.shape[0], k
        elif not k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert torch.equal(ckpt["state_dict"][k], v), k


# ------------------------------------------------------------------ 3. VOC with its own classes


def to_voc(src: Path, dst: Path, classes_txt: tuple[str, ...] | None = None) -> Path:
    """A LabelImg-style VOC folder written from the synthetic COCO files (1-based inclusive pixels)."""
    (dst / "Annotations").mkdir(parents=True)
    (dst / "JPEGImages").mkdir()
    (dst / "ImageSets" / "Main").mkdir(parents=True)
    for split in ("train", "val"):
        d = json.loads((src / "annotations" / f"{split}.json").read_text())
        cats = {c["id"]: c["name"] for c in d["categories"]}
        ids = []
        for im in d["images"]:
            stem = f"{split}_{Path(im['file_name']).stem}"
            ids.append(stem)
            shutil.copy(src / split / im["file_name"], dst / "JPEGImages" / f"{stem}.jpg")
            root = ET.Element("annotation")
            size = ET.SubElement(root, "size")
            ET.SubElement(size, "width").text = str(im["width"])
            ET.SubElement(size, "height").text = str(im["height"])
            for a in d["annotations"]:
                if a["image_id"] != im["id"]:
                    continue
                x, y, w, h = a["bbox"]
                obj = ET.SubElement(root, "object")
                ET.SubElement(obj, "name").text = cats[a["category_id"]]
                bb = ET.SubElement(obj, "bndbox")
                for tag, v in (("xmin", x + 1), ("ymin", y + 1), ("xmax", x + w), ("ymax", y + h)):
                    ET.SubElement(bb, tag).text = f"{v:.1f}"
            ET.ElementTree(root).write(dst / "Annotations" / f"{stem}.xml")
        (dst / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    if classes_txt is not None:
        (dst / "classes.txt").write_text("\n".join(classes_txt) + "\n")
    return dst


def test_voc_own_classes_discovered_sorted(
    synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """LabelImg XML with names outside VOC's 20: the classes are found in the XML files, sorted, and the
    run learns from every box (before: every object skipped, loss 0.000, VOC's names in last.pt)."""
    voc = to_voc(synth, tmp_path / "voc")
    out = tmp_path / "run"
    code, _, err = cli(train_main, "mfssd-train", [
        "--data", str(voc), "--variant", "mfssd_bn", "--width", "0.125", "--out", str(out), "--epochs", "1",
        "--batch", "8", "--max-steps", "2", "--workers", "0", "--no-progress", "--eval-images", "4",
        "--json", str(tmp_path / "t.json")], capsys)  # fmt: skip
    assert code == 0, err
    said = [r.message for r in caplog.records if "classes discovered from the XML files (sorted)" in r.message]
    assert len(said) == 1 and "circle, cross, ring, square, star, triangle" in said[0], said
    ckpt = read_checkpoint(out / "last.pt")
    assert tuple(ckpt["config"]["class_names"]) == tuple(sorted(NAMES))
    assert json.loads((tmp_path / "t.json").read_text())["history"][0]["loss"] > 0.5


def test_voc_classes_file_sets_the_order(synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """classes.txt beside the annotations is the class list, in its order; the demo model (whose
    order differs from sorted) scores the VOC copy exactly as the COCO original."""
    voc = to_voc(synth, tmp_path / "voc", classes_txt=tuple(reversed(NAMES)))
    code, _, err = cli(eval_main, "mfssd-eval", ["--data", str(voc), "--json", str(tmp_path / "v.json"), "--no-coco",
                                                 "--no-progress"], capsys)  # fmt: skip
    assert code == 0, err
    code, _, err = cli(eval_main, "mfssd-eval", ["--data", str(synth), "--json", str(tmp_path / "c.json"),
                                                 "--no-coco", "--no-progress"], capsys)  # fmt: skip
    assert code == 0, err
    v, c = (json.loads((tmp_path / f"{k}.json").read_text()) for k in "vc")
    assert list(v["per_class"]) == list(NAMES)  # reported in the model's order
    assert v["voc07_map"] == pytest.approx(c["voc07_map"], abs=0.02)  # VOC's 1-based pixel rounding aside


def test_voc_every_box_skipped_is_an_error(synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--classes voc on that folder: every object is unknown; one line, exit 2, no checkpoint."""
    voc = to_voc(synth, tmp_path / "voc")
    out = tmp_path / "run"
    code, _, err = cli(train_main, "mfssd-train", ["--data", str(voc), "--classes", "voc", "--out", str(out),
                                                   "--max-steps", "1", "--workers", "0"], capsys)  # fmt: skip
    assert code == 2
    one_line_error(err, "no usable box", "unknown class")
    assert not (out / "last.pt").exists()


# ------------------------------------------------------------------ 4. no readable image


def test_no_image_readable_is_an_error(synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Images not where the JSON says: eval and train stop with one line and write nothing (before:
    'mAP nan (0 images)', AP 0.0 in the JSON, exit 0; training died in the DataLoader)."""
    data = tmp_path / "moved"
    shutil.copytree(synth, data)
    shutil.move(data / "val", data / "val_elsewhere")
    shutil.move(data / "train", data / "train_elsewhere")
    code, _, err = cli(eval_main, "mfssd-eval", ["--data", str(data), "--json", str(tmp_path / "e.json")], capsys)
    assert code == 2
    one_line_error(err, "none of the 16 images", "exist")
    assert not (tmp_path / "e.json").exists()
    code, _, err = cli(train_main, "mfssd-train", ["--data", str(data), "--out", str(tmp_path / "run"),
                                                   "--max-steps", "1", "--workers", "0"], capsys)  # fmt: skip
    assert code == 2
    one_line_error(err, "none of the 24 images")
    assert not (tmp_path / "run" / "last.pt").exists()


# ------------------------------------------------------------------ 5. nothing of the user's overwritten


def test_train_never_writes_over_a_run(synth: Path, in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--data", str(synth), "--width", "0.125", "--epochs", "1", "--batch", "8", "--max-steps", "1",
            "--workers", "0", "--val-split", "", "--no-progress"]  # fmt: skip
    code, out, err = cli(train_main, "mfssd-train", args, capsys)
    assert code == 0, err
    first = tree_hashes(in_tmp / "runs" / "train")
    assert "last.pt" in first
    code, out, err = cli(train_main, "mfssd-train", args, capsys)  # the default folder: a fresh numbered one
    assert code == 0, err
    assert "runs/train2" in out and (in_tmp / "runs" / "train2" / "last.pt").is_file()
    code, _, err = cli(train_main, "mfssd-train", [*args, "--out", "runs/train"], capsys)  # named: refused
    assert code == 2
    one_line_error(err, "already holds a run", "--resume")
    assert tree_hashes(in_tmp / "runs" / "train") == first


def test_synth_refuses_a_folder_that_holds_anything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = cli(data_main, "mfssd-data", ["synth", "--out", str(out), "--train", "2", "--val", "2"], capsys)
    assert code == 2
    one_line_error(err, "already holds files")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_prune_never_writes_over_its_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "m.pt"
    shutil.copy(DEMO_MODEL, ckpt)
    before = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    code, _, err = cli(prune_main, "mfssd-prune", [str(ckpt), "--ratio", "0.3", "--out", str(ckpt)], capsys)
    assert code == 2
    one_line_error(err, "is the checkpoint being pruned")
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == before


def test_detect_default_folder_is_fresh(synth: Path, in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    imgs = sorted((synth / "val").glob("*.jpg"))[:2]
    src = in_tmp / "imgs"
    src.mkdir()
    for p in imgs:
        shutil.copy(p, src / p.name)
    code, _, err = cli(detect_main, "mfssd-detect", [str(src), "--no-progress"], capsys)
    assert code == 0, err
    first = tree_hashes(in_tmp / "runs" / "detect")
    code, _, err = cli(detect_main, "mfssd-detect", [str(src / imgs[0].name), "--no-progress"], capsys)
    assert code == 0, err
    assert tree_hashes(in_tmp / "runs" / "detect") == first
    assert sorted(p.name for p in (in_tmp / "runs" / "detect2").iterdir()) == sorted(["detections.json", imgs[0].name])
    code, _, err = cli(detect_main, "mfssd-detect", [str(src), "--save-dir", "runs/detect"], capsys)
    assert code == 2
    one_line_error(err, "already holds files")


# ------------------------------------------------------------------ 8-9. smaller first-time confusions


def test_bundled_file_name_says_where_it_lives(synth: Path, in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = str(sorted((synth / "val").glob("*.jpg"))[0])
    code, _, err = cli(detect_main, "mfssd-detect", [img, "--model", DEMO_MODEL.name, "--no-save"], capsys)
    assert code == 2
    one_line_error(err, "not found", str(DEMO_MODEL))


def test_int8_without_calib_fails_before_the_export(capsys: pytest.CaptureFixture[str]) -> None:
    from mfssd_deploy.cli.export import main as export_main

    code, _, err = cli(export_main, "mfssd-export", ["--int8"], capsys)
    assert code == 2
    one_line_error(err, "--int8 needs calibration images", "--calib DIR")


def test_prune_of_a_model_never_trained_sparse_warns_and_scores(
    synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo model was trained with --sparsity 0: pruning 30% says so and prints mAP before and after."""
    code, out, err = cli(prune_main, "mfssd-prune", ["--ratio", "0.3", "--val", str(synth), "--out",
                                                     str(tmp_path / "p.pt"), "--no-progress"], capsys)  # fmt: skip
    assert code == 0, err
    assert "was not trained with --sparsity" in err
    line = next(ln for ln in out.splitlines() if ln.startswith("mAP@0.5 on"))
    before, after = (float(w) for w in line.replace(",", "").split() if w.replace(".", "").isdigit())
    assert before > 0.5 and after < before, line


def test_tiny_tiles_are_warned_about(synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = sorted((synth / "val").glob("*.jpg"))[0]
    code, _, err = cli(detect_main, "mfssd-detect", [str(img), "--tile", "60", "--no-save", "--no-progress"], capsys)
    assert code == 0, err
    assert "warning: --tile 60 is upscaled 5x" in err
