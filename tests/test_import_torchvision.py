"""mfssd-import of torchvision's ssd300_vgg16, held to torchvision's own model, live.

A seeded ssd300_vgg16(weights=None, weights_backbone=None) is the reference: its raw head outputs, its
default boxes and its end-to-end detections (model([image]) with its own transform, box coder and
post-processing) against the imported checkpoint in our Detector and in the exported end2end ONNX.
With random weights every class scores about 1/K and both sides would hit their caps; the background
bias is raised so that a few dozen candidates pass 0.01, and the comparison is about the detections.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torchvision.models.detection import ssd300_vgg16
from torchvision.ops import box_iou

from mfssd_deploy.cli import run_cli
from mfssd_deploy.cli.imports import main as import_main
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.runtime.detector import Detector

K = 4  # classes, background included
NAMES = ("cat", "dog", "bird")


def _image() -> np.ndarray:
    """A 300x300 BGR image with a few shapes (torchvision's transform is then a no-op resize)."""
    rng = np.random.default_rng(5)
    img = (rng.random((300, 300, 3)) * 80).astype(np.uint8)
    cv2.circle(img, (90, 100), 40, (30, 200, 240), -1)
    cv2.rectangle(img, (170, 150), (260, 250), (250, 90, 40), -1)
    return img


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path, Path]:
    """The seeded torchvision model (background bias raised), its state_dict file and a train.py-style
    checkpoint of it ({"model", "optimizer", "args": argparse.Namespace, ...})."""
    torch.manual_seed(0)
    tv = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=K).eval()
    x = torch.from_numpy(cv2.cvtColor(_image(), cv2.COLOR_BGR2RGB)).permute(2, 0, 1).float()[None] / 255
    with torch.no_grad():
        logits = tv.head(list(tv.backbone(tv.transform(list(x))[0].tensors).values()))["cls_logits"][0]
        margin = (logits[:, 1:].max(1).values - logits[:, 0]).sort(descending=True).values
        shift = float(margin[40]) + np.log(1 / 0.01)  # about 40 priors keep a class above 0.01
        for m in tv.head.classification_head.module_list:
            m.bias[0::K] += shift
    folder = tmp_path_factory.mktemp("tv")
    sd = folder / "ssd300_vgg16.pth"
    torch.save(tv.state_dict(), sd)
    ckpt = folder / "model_7.pth"
    torch.save({"model": tv.state_dict(), "optimizer": {"state": {}}, "epoch": 7,
                "args": argparse.Namespace(lr=0.002, epochs=8)}, ckpt)  # fmt: skip
    return tv, sd, ckpt


def _import(src: Path, out: Path, *extra: str) -> int:
    return run_cli("mfssd-import", import_main, [str(src), "--out", str(out), *extra])


def test_raw_outputs_and_priors_equal_torchvision(reference: tuple, tmp_path: Path) -> None:  # type: ignore[type-arg]
    from mfssd_deploy.checkpoint import load_model, read_checkpoint
    from mfssd_deploy.geometry.priors import make_priors

    tv, sd, _ = reference
    out = tmp_path / "m.pt"
    assert _import(sd, out, "--classes", str(_names(tmp_path))) == 0
    ours = load_model(out).eval()
    x = torch.randn(2, 3, 300, 300, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = tv.head(list(tv.backbone(x).values()))
        loc, conf = ours(x)
    assert (loc - ref["bbox_regression"]).abs().max() <= 1e-5
    assert (conf - ref["cls_logits"]).abs().max() <= 1e-5
    grid = [f.shape[-2:] for f in tv.backbone(x).values()]
    tv_priors = tv.anchor_generator._grid_default_boxes(grid, [300, 300], dtype=torch.float32)
    ours_priors = torch.from_numpy(np.array(make_priors(ours.config.priors)))
    assert tv_priors.shape == ours_priors.shape == (8732, 4)
    assert (tv_priors - ours_priors).abs().max() <= 1e-6  # float32 of the same formula
    assert int(((tv_priors[:, :2] > 1) | (tv_priors[:, :2] < 0)).any(1).sum()) == 114  # w/h clamp only: kept
    meta = read_checkpoint(out)["meta"]["imported"]
    assert meta["from"] == "torchvision" and len(meta["sha256"]) == 64


def _names(folder: Path) -> Path:
    f = folder / "names.txt"
    f.write_text("\n".join(NAMES) + "\n")
    return f


def _torchvision_detections(tv: torch.nn.Module, img: np.ndarray) -> tuple[np.ndarray, ...]:
    x = torch.from_numpy(cv2.cvtColor(img, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).float() / 255
    with torch.no_grad():
        d = tv([x])[0]
    return d["boxes"].numpy(), d["scores"].numpy(), d["labels"].numpy() - 1


def _same(ref: tuple[np.ndarray, ...], got: tuple[np.ndarray, ...]) -> None:
    rb, rs, rl = ref
    gb, gs, gl = got
    assert 5 <= len(rb) == len(gb), (len(rb), len(gb))
    iou = box_iou(torch.from_numpy(rb), torch.from_numpy(np.asarray(gb, np.float32))).numpy()
    j = iou.argmax(1)
    assert (iou.max(1) >= 0.999).all(), iou.max(1).min()
    assert np.abs(rs - gs[j]).max() <= 1e-4
    assert (rl == gl[j]).all()


def test_end_to_end_detections_equal_torchvision(reference: tuple, tmp_path: Path) -> None:  # type: ignore[type-arg]
    """torchvision's model([image]) against the imported .pt in our Detector and its end2end ONNX export."""
    from mfssd_deploy.cli.export import main as export_main

    tv, _, ckpt = reference
    out = tmp_path / "m.pt"
    assert _import(ckpt, out, "--from", "torchvision", "--classes", str(_names(tmp_path))) == 0  # train.py format
    # 300x300 (torchvision's resize is a no-op) and 400x300: torchvision normalises then resizes in float,
    # which the import's config.resize = "float" reproduces (resized in 8 bits, scores moved by up to 8e-3)
    images = [_image(), cv2.resize(_image(), (400, 300), interpolation=cv2.INTER_CUBIC)]
    refs = [_torchvision_detections(tv, img) for img in images]
    for ref, r in zip(refs, Detector(out).detect_arrays(images), strict=True):
        _same(ref, (r.boxes, r.scores, r.labels))
    assert run_cli("mfssd-export", export_main, ["--model", str(out), "--out-dir", str(tmp_path / "x"),
                                                 "--end2end", "--no-progress"]) == 0  # fmt: skip
    for ref, r in zip(refs, Detector(tmp_path / "x" / "m.end2end.onnx").detect_arrays(images), strict=True):
        _same(ref, (r.boxes, r.scores, r.labels))


def test_bad_imports_are_one_line_and_write_nothing(reference: tuple, tmp_path: Path,  # type: ignore[type-arg]
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    _, sd, _ = reference
    cases = {}
    yolo = tmp_path / "yolo.pt"
    torch.save({"model.0.conv.weight": torch.zeros(16, 3, 3, 3), "model.24.m.0.weight": torch.zeros(255, 128, 1, 1)},
               yolo)  # fmt: skip
    cases["another family"] = ([str(yolo)], "are not from a supported SSD/FSSD code base")
    cases["class count"] = ([str(sd), "--classes", "voc"], "names 20 classes but the head has 3")
    evil = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "hook": _Evil()}, evil)
    cases["pickled code"] = ([str(evil)], "refused")
    partial = tmp_path / "partial.pt"
    state = torch.load(sd, weights_only=True)
    state.pop("backbone.features.0.weight")
    torch.save(state, partial)
    cases["missing key"] = ([str(partial), "--from", "torchvision"], "missing ['backbone.features.0.weight']")
    for case, (argv, says) in cases.items():
        out = tmp_path / f"{case}.pt"
        code = run_cli("mfssd-import", import_main, [*argv, "--out", str(out)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and "\n" not in err and says in err, (case, err)
        assert not out.exists(), case
    existing = tmp_path / "mine.pt"
    existing.write_bytes(b"mine")
    assert run_cli("mfssd-import", import_main, [str(sd), "--out", str(existing)]) == 2
    assert existing.read_bytes() == b"mine"
    with pytest.raises(MfssdError, match="already exists"):
        from mfssd_deploy.importers import import_checkpoint

        import_checkpoint(sd, existing)


class _Evil:
    def __reduce__(self) -> tuple:  # type: ignore[type-arg]
        return (print, ("this would run on loading",))


def test_new_geometry_is_refused_by_an_older_reader_and_absent_otherwise(reference: tuple, tmp_path: Path) -> None:  # type: ignore[type-arg]
    """The decode settings a torchvision import needs are written only when set; a reader from before them
    (NMSConfig with four fields, ModelConfig.from_dict calling NMSConfig(**nms)) fails on such a model
    instead of decoding its boxes the reference SSD's way."""
    import dataclasses

    from mfssd_deploy.checkpoint import read_checkpoint
    from mfssd_deploy.config import make_config

    _, sd, _ = reference
    out = tmp_path / "m.pt"
    assert _import(sd, out) == 0
    nms = read_checkpoint(out)["config"]["nms"]
    old_nms = dataclasses.make_dataclass("NMSConfig", ["conf_thresh", "iou_thresh", "max_det", "pre_nms_topk"])
    with pytest.raises(TypeError):
        old_nms(**nms)
    assert read_checkpoint(out)["config"]["priors"]["clip"] == "wh"
    assert read_checkpoint(out)["config"]["resize"] == "float"
    assert read_checkpoint(out)["format"] == "mfssd-checkpoint/2"  # an older checkpoint reader refuses /2
    plain = make_config("mfssd_bn", 7).to_dict()
    old_nms(**plain["nms"])  # every other model reads as before
    assert plain["priors"]["clip"] is True and "resize" not in plain


def test_import_goes_through_int8_export_and_tiled_detection(reference: tuple, tmp_path: Path) -> None:  # type: ignore[type-arg]
    """The imported checkpoint is an ordinary one: INT8 export with a calibration folder, and mfssd-detect
    with tiles, both run (random weights: the INT8 agreement is not what is held here, so --min-agreement 0)."""
    import json

    from mfssd_deploy.cli.detect import main as detect_main
    from mfssd_deploy.cli.export import main as export_main

    _, sd, _ = reference
    out = tmp_path / "m.pt"
    assert _import(sd, out) == 0
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(4):
        cv2.imwrite(str(calib / f"{i}.jpg"), np.roll(_image(), 40 * i, axis=1))
    code = run_cli("mfssd-export", export_main, ["--model", str(out), "--out-dir", str(tmp_path / "x"), "--end2end",
                   "--int8", "--calib", str(calib), "--min-agreement", "0", "--no-progress"])  # fmt: skip
    assert code == 0 and (tmp_path / "x" / "m.int8.end2end.onnx").is_file()
    big = tmp_path / "big.jpg"
    cv2.imwrite(str(big), cv2.resize(_image(), (600, 450)))
    code = run_cli("mfssd-detect", detect_main, [str(big), "--model", str(out), "--tile", "300", "--save-dir",
                   str(tmp_path / "d"), "--no-progress"])  # fmt: skip
    assert code == 0
    assert json.loads((tmp_path / "d" / "detections.json").read_text())
