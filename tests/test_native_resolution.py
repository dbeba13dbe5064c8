"""Native-resolution inference (issue 16, item 4): priors, configs, export, Detector and profiles for a W x H input.

The references are independent of the code under test: the 300x300 priors' bytes as the code produced them before
rectangular inputs existed, a plain loop for rectangular priors, the real modules' head input shapes for the
feature-map arithmetic, PyTorch for the exported graphs, and a drawn object for the boxes in image pixels.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import pytest
import torch
from conftest import trained_like_model

from mfssd_deploy import Detector
from mfssd_deploy.checkpoint import save_checkpoint
from mfssd_deploy.cli import run_cli
from mfssd_deploy.cli.export import main as export_main
from mfssd_deploy.config import (
    FSSD_PRIORS,
    SSD300_PRIORS,
    VARIANTS,
    ModelConfig,
    feature_maps,
    make_config,
    min_input_side,
    parse_input_size,
)
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.exporters.onnx_export import read_metadata
from mfssd_deploy.exporters.pipeline import ExportRequest, run_export
from mfssd_deploy.geometry.priors import make_priors
from mfssd_deploy.models import build_model
from mfssd_deploy.runtime.preprocess import preprocess_batch, scale_to_image

from helpers import same

# sha256 of make_priors(...).tobytes() as the code computed them before rectangular inputs (commit ada9978): the
# bundled models and every 300x300 export depend on these bytes.
SHA_300 = {
    "fssd": "919d5cbdd009a845bd2ec9a36db0c67386ef4c5314ecb67ada85ca2b2815b674",  # 11,620 priors
    "ssd300": "a962243ddb360b314b547e9f8718fe969000367ae261cf551ecd1527cc68ac93",  # 8,732 priors
}
SIZE = (470, 360)  # W x H: neither a multiple of 8 nor square, conv4_3 59 x 45 (odd)


# ------------------------------------------------------------------------------------------------------ priors


def test_300_priors_and_config_unchanged_bit_for_bit() -> None:
    for spec, key in ((FSSD_PRIORS, "fssd"), (SSD300_PRIORS, "ssd300")):
        assert hashlib.sha256(make_priors(spec).tobytes()).hexdigest() == SHA_300[key]
    for v in VARIANTS:
        cfg = make_config(v)
        again = cfg.at_input_size(300, 300)
        assert again == cfg and again.priors == cfg.priors  # the very spec: (38, 19, 10, 5, 3, 1), steps 8..300
        assert cfg.priors.feature_maps == (38, 19, 10, 5, 3, 1) and cfg.priors.steps == (8, 16, 32, 64, 100, 300)
        assert (
            hashlib.sha256(make_priors(again.priors).tobytes()).hexdigest()
            == SHA_300["ssd300" if v == "ssd300" else "fssd"]
        )
    # what old readers understand: the same dict as before, an int input size and scalar prior fields
    d = make_config("mfssd_bn").to_dict()
    assert d["input_size"] == 300 and d["priors"]["image_size"] == 300
    assert d["priors"]["feature_maps"] == [38, 19, 10, 5, 3, 1] and d["priors"]["steps"] == [8, 16, 32, 64, 100, 300]


def reference_priors(cfg: ModelConfig) -> np.ndarray:
    """A plain loop over the rule of docs/model.md, in pixels: centres (j + 0.5) * step_x / W, sizes px / W, px / H."""
    w, h = cfg.input_wh
    spec = cfg.priors
    out = []
    for k in range(len(spec.feature_maps)):
        fh, fw = spec.grid(k)
        sx, sy = spec.step_xy(k)
        mn, mx = spec.min_sizes[k], spec.max_sizes[k]
        for i in range(fh):
            for j in range(fw):
                cx, cy = (j + 0.5) * sx / w, (i + 0.5) * sy / h
                out.append([cx, cy, mn / w, mn / h])
                big = math.sqrt(mn * mx)
                out.append([cx, cy, big / w, big / h])
                for ar in spec.aspect_ratios[k]:
                    r = math.sqrt(ar)
                    out.append([cx, cy, mn * r / w, mn / r / h])
                    out.append([cx, cy, mn / r / w, mn * r / h])
    return np.clip(np.asarray(out), 0, 1)


@pytest.mark.parametrize(("variant", "size"), [("mfssd_bn", SIZE), ("ssd300", (320, 560)), ("fssd", (640, 360))])
def test_rectangular_priors_match_a_plain_loop(variant: str, size: tuple[int, int]) -> None:
    cfg = make_config(variant).at_input_size(*size)
    got = make_priors(cfg.priors)
    assert got.shape == (cfg.priors.num_priors, 4) and got.dtype == np.float32
    np.testing.assert_allclose(got, reference_priors(cfg), rtol=0, atol=2e-7)
    # strides stay pixels (8, 16, 32, 64); the grids SSD spreads over the image (100, 300 at 300): side / cells
    w, h = size
    maps = feature_maps(variant, w, h)
    assert [cfg.priors.step_xy(k) for k in range(4)] == [(8.0, 8.0), (16.0, 16.0), (32.0, 32.0), (64.0, 64.0)]
    for k in (4, 5):
        fh, fw = maps[k]
        assert cfg.priors.step_xy(k) == pytest.approx((w / fw, h / fh))


def test_a_prior_is_the_same_pixel_box_at_every_input_size() -> None:
    """The first prior of conv4_3: 30 px square centred on pixel (4, 4), whatever the input's size and shape."""
    for size in ((300, 300), SIZE, (1920, 1080)):
        cfg = make_config("mfssd_bn").at_input_size(*size)
        w, h = cfg.input_wh
        cx, cy, bw, bh = make_priors(cfg.priors)[0]
        assert (cx * w, cy * h, bw * w, bh * h) == pytest.approx((4.0, 4.0, 30.0, 30.0), abs=1e-4)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("size", [(300, 300), SIZE, (300, 530), (1280, 720)])
def test_feature_maps_are_the_real_heads_shapes(variant: str, size: tuple[int, int]) -> None:
    model = build_model(variant, 3, width=0.0625).eval()
    seen: list[tuple[int, int]] = []
    hook = model.head.register_forward_pre_hook(lambda m, a: seen.extend(tuple(x.shape[-2:]) for x in a[0]))
    try:
        w, h = size
        with torch.inference_mode():
            loc, conf = model(torch.zeros(1, 3, h, w))
    finally:
        hook.remove()
    assert tuple(seen) == feature_maps(variant, w, h)
    assert loc.shape[1] == conf.shape[1] == make_config(variant).at_input_size(w, h).priors.num_priors


@pytest.mark.parametrize("variant", VARIANTS)
def test_smallest_input_runs_and_one_pixel_less_is_refused(variant: str) -> None:
    n = min_input_side(variant)
    model = build_model(variant, 3, width=0.0625).eval()
    with torch.inference_mode():
        loc, _ = model(torch.zeros(1, 3, n, 2 * n))
    assert loc.shape[1] == make_config(variant).at_input_size(2 * n, n).priors.num_priors
    with pytest.raises(MfssdError, match=rf"too small for {variant}.*at least {n} pixels"):
        make_config(variant).at_input_size(2 * n, n - 1)


# ------------------------------------------------------------------------------------------------------ config


def test_rectangular_config_round_trips_and_old_readers_refuse_it() -> None:
    cfg = make_config("mfssd_bn", 4, class_names=("a", "b", "c")).at_input_size(1920, 1080)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["input_size"] == [1920, 1080] and ModelConfig.from_dict(d) == cfg
    with pytest.raises(TypeError):  # what the previous from_dict did first: int(d["input_size"])
        int(d["input_size"])
    # a square size whose spread steps are fractions is written in pairs too, so an old reader cannot truncate them
    d512 = make_config("mfssd_bn").at_input_size(512, 512).to_dict()
    assert d512["input_size"] == 512 and d512["priors"]["steps"][4] == [512 / 6, 512 / 6]
    assert ModelConfig.from_dict(d512) == make_config("mfssd_bn").at_input_size(512, 512)
    # legacy dicts load as before
    legacy = make_config("mfssd_bn").to_dict()
    assert ModelConfig.from_dict(legacy).input_wh == (300, 300)


def test_inconsistent_configs_are_refused() -> None:
    d = make_config("mfssd_bn").at_input_size(*SIZE).to_dict()
    bad = json.loads(json.dumps(d))
    bad["input_size"] = 300  # priors still for 470x360
    with pytest.raises(MfssdError, match="differs from the priors' image size 470x360"):
        ModelConfig.from_dict(bad)
    bad = json.loads(json.dumps(d))
    bad["priors"]["feature_maps"][0] = [45, 58]
    with pytest.raises(MfssdError, match=r"not the .* that mfssd_bn produces at 470x360"):
        ModelConfig.from_dict(bad)
    bad = json.loads(json.dumps(d))
    bad["input_size"] = [470.5, 360]
    with pytest.raises(MfssdError, match="malformed"):
        ModelConfig.from_dict(bad)


def test_a_sized_config_is_not_resized_again() -> None:
    """Strides and spread steps are told apart on the square spec: resizing a resized config would move the
    stride layers' priors (1920x1080 -> 300x300 gave steps of 7.89 instead of 8), so it is refused."""
    sized = make_config("mfssd_bn").at_input_size(1920, 1080)
    assert sized.at_input_size(1920, 1080) is sized
    with pytest.raises(MfssdError, match="already sized for 1920x1080: make the 300x300 config from the square"):
        sized.at_input_size(300, 300)
    assert make_config("mfssd_bn").at_input_size(300, 300).priors == make_config("mfssd_bn").priors


@pytest.mark.parametrize(
    ("text", "want"), [("1920x1080", (1920, 1080)), ("640X360", (640, 360)), ("512", (512, 512)), (300, (300, 300))]
)
def test_parse_input_size(text: Any, want: tuple[int, int]) -> None:
    assert parse_input_size(text) == want


@pytest.mark.parametrize("text", ["1920*1080", "1920x", "x1080", "1920x1080x3", "19.5x10", "0x300", "-640x360", ""])
def test_parse_input_size_refuses(text: str) -> None:
    with pytest.raises(MfssdError, match="--input-size"):
        parse_input_size(text)


# ------------------------------------------------------------------------------------------------- pre-process


def test_preprocess_resizes_to_w_by_h_and_boxes_map_back_per_axis() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (200, 500, 3), dtype=np.uint8)
    x = preprocess_batch([img, img[:, :250]], SIZE, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert x.shape == (2, 3, 360, 470) and x.flags.c_contiguous
    ref = cv2.resize(img, SIZE, interpolation=cv2.INTER_LINEAR)[..., ::-1].astype(np.float32) / 255
    np.testing.assert_allclose(x[0].transpose(1, 2, 0), (ref - 0.5) / 0.25, atol=1e-5)
    native = rng.integers(0, 255, (360, 470, 3), dtype=np.uint8)  # already the input size: the very pixels
    xn = preprocess_batch([native], SIZE, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), color="bgr")
    np.testing.assert_allclose(xn[0].transpose(1, 2, 0) * 255, native, atol=1e-3)
    px = scale_to_image(np.array([[0.1, 0.2, 0.5, 1.0]]), 200, 500)
    np.testing.assert_allclose(px, [[50, 40, 250, 200]])


# ------------------------------------------------------------------------------------------- export, Detector


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The narrow trained-like model exported at 470x360 (raw and end2end, FP32), default names."""
    tmp = tmp_path_factory.mktemp("native")
    ckpt = save_checkpoint(tmp / "m.pt", trained_like_model())
    imgs = tmp / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        img = (rng.random((300 + 90 * i, 420 + 60 * i, 3)) * 255).astype(np.uint8)
        cv2.circle(img, (120 + 40 * i, 140), 30, (0, 0, 255), -1)
        cv2.imwrite(str(imgs / f"{i}.jpg"), img)
    report = run_export(
        ExportRequest(model=ckpt, out_dir=tmp / "x", parity_images=sorted(imgs.iterdir()), input_size=SIZE, time_runs=0)
    )
    assert report["input_size"] == list(SIZE) and all(a["parity"]["ok"] for a in report["artifacts"])
    x = tmp / "x"
    return {"pt": ckpt, "raw": x / "m_470x360.onnx", "e2e": x / "m_470x360.end2end.onnx", "imgs": imgs, "out": x}


def test_export_writes_a_w_by_h_graph_with_its_metadata(native: dict[str, Path]) -> None:
    for key in ("raw", "e2e"):
        model = onnx.load(native[key])
        dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        assert dims == ["batch", 3, 360, 470]
        cfg = ModelConfig.from_dict(read_metadata(model)["config"])
        assert cfg == config_at(native["pt"], SIZE)
    assert not (native["out"] / "m.end2end.onnx").exists()  # the 300x300 file name is never taken


def config_at(ckpt: Path, size: tuple[int, int]) -> ModelConfig:
    from mfssd_deploy.checkpoint import read_checkpoint

    return ModelConfig.from_dict(read_checkpoint(ckpt)["config"]).at_input_size(*size)


def test_onnx_runtime_detections_equal_pytorch_at_the_same_size(native: dict[str, Path]) -> None:
    images = [cv2.imread(str(p)) for p in sorted(native["imgs"].iterdir())]
    torch_det = Detector(native["pt"], input_size=SIZE)
    assert torch_det.config.input_wh == SIZE
    want = torch_det.detect_arrays(images)
    assert sum(len(r) for r in want) > 0
    for key in ("e2e", "raw"):
        det = Detector(native[key])
        assert det.config.input_wh == SIZE and det.preprocess(images).shape == (3, 3, 360, 470)
        same(det.detect_arrays(images), want)
    # and the model really sees more at this size: the 300x300 detections differ
    plain = Detector(native["pt"]).detect_arrays(images)
    assert [len(r) for r in plain] != [len(r) for r in want] or not np.allclose(plain[0].boxes, want[0].boxes)


def test_detector_input_size_rules(native: dict[str, Path]) -> None:
    assert Detector(native["e2e"], input_size="470x360").config.input_wh == SIZE  # repeating it is fine
    with pytest.raises(MfssdError, match=r"exported for 470x360 input; re-export .*--input-size 640x360"):
        Detector(native["e2e"], input_size=(640, 360))
    with pytest.raises(MfssdError, match=r"too small for mfssd_bn.*at least 260 pixels"):
        Detector(native["pt"], input_size=(640, 200))
    with pytest.raises(MfssdError, match="input_size '640-360'"):
        Detector(native["pt"], input_size="640-360")
    det = Detector(native["pt"], input_size=SIZE, tile=True)  # tiles of the model's input size: 470x360
    assert det.tiling is not None and det.tiling.tile == SIZE


def test_cli_bad_input_size_is_one_line(
    native: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for bad, what in (("1920*1080", "give WIDTHxHEIGHT"), ("640x100", "too small for mfssd_bn")):
        out = tmp_path / "o"
        args = ["--model", str(native["pt"]), "--out-dir", str(out), "--parity-images", str(native["imgs"]),
                "--input-size", bad]  # fmt: skip
        assert run_cli("mfssd-export", export_main, args) == 2
        err = capsys.readouterr().err.strip()
        assert what in err and len(err.splitlines()) == 1 and "Traceback" not in err
        assert not out.exists() or not any(out.iterdir())


@pytest.fixture(scope="module")
def demo_native(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled demo model exported end2end at 640x360."""
    from mfssd_deploy.demo_assets import DEMO_MODEL, sample_images

    out = tmp_path_factory.mktemp("demo_native")
    req = ExportRequest(model=Path(DEMO_MODEL), out_dir=out, layouts=("end2end",), parity_images=sample_images()[:2],
                        input_size=(640, 360), time_runs=0, name="demo")  # fmt: skip
    run_export(req)
    return out / "demo.end2end.onnx"


def known_frame() -> np.ndarray:
    """A 1280x720 frame with a red disc of radius 30 at (900, 500) and a blue 50 px square at (200..250, 150..200)."""
    img = np.full((720, 1280, 3), 128, np.uint8)
    cv2.circle(img, (900, 500), 30, (0, 0, 255), -1, cv2.LINE_AA)
    cv2.rectangle(img, (200, 150), (250, 200), (255, 0, 0), -1)
    return img


def best(result: Any, label: str) -> tuple[np.ndarray, float]:
    names = np.array(result.class_names)[result.labels]
    k = int(np.flatnonzero(names == label)[0])  # rows are sorted by score
    return result.boxes[k], float(result.scores[k])


@pytest.mark.parametrize("which", ["onnx", "pt"])
def test_detector_on_a_w_by_h_model_gives_boxes_in_image_pixels(demo_native: Path, which: str) -> None:
    from mfssd_deploy.demo_assets import DEMO_MODEL

    det = Detector(demo_native) if which == "onnx" else Detector(DEMO_MODEL, input_size=(640, 360))
    (r,) = det(known_frame())  # 1280x720 into a 640x360 input: every box is scaled back by 2 on both axes
    assert r.image_shape == (720, 1280)
    disc, s_disc = best(r, "circle")
    square, s_square = best(r, "square")
    assert s_disc > 0.9 and s_square > 0.5
    np.testing.assert_allclose(disc, [870, 470, 930, 530], atol=6)
    np.testing.assert_allclose(square, [200, 150, 251, 201], atol=6)


def test_tensorrt_profile_takes_the_input_size(native: dict[str, Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from mfssd_deploy.exporters.tensorrt_build import BuildRequest, build_engine

    from fake_tensorrt import make_fake_tensorrt

    trt = make_fake_tensorrt("10.3.0")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    out = tmp_path / "m.engine"
    build_engine(BuildRequest(onnx={"fp32": native["e2e"]}, out=out, precision="fp32", batch=(1, 2, 4),
                              workspace_gb=1.0), gpu=("Orin", (8, 7)))  # fmt: skip
    assert ("profile.set_shape", "images", (1, 3, 360, 470), (2, 3, 360, 470), (4, 3, 360, 470)) in trt.calls


def test_onnx_runtime_tensorrt_ep_profile_takes_the_input_size(native: dict[str, Path]) -> None:
    from mfssd_deploy.runtime.backends.onnxruntime_backend import choose_providers

    meta = read_metadata(onnx.load(native["e2e"]))
    providers = dict(choose_providers("cuda", ["TensorrtExecutionProvider"], meta, None, {}, max_batch=4))
    assert providers["TensorrtExecutionProvider"]["trt_profile_max_shapes"] == "images:4x3x360x470"


def test_a_checkpoint_keeps_its_300_input_without_input_size(native: dict[str, Path]) -> None:
    det = Detector(native["pt"])
    assert det.config.input_size == 300 and det.preprocess([np.zeros((720, 1280, 3), np.uint8)]).shape == (
        1,
        3,
        300,
        300,
    )
