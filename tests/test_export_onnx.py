"""ONNX export: raw and end2end graphs through ONNX Runtime against the PyTorch reference."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from mfssd_deploy.checkpoint import save_checkpoint
from mfssd_deploy.cli import run_cli
from mfssd_deploy.cli.export import main as export_main
from mfssd_deploy.config import NMSConfig
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.exporters import onnx_export as ox
from mfssd_deploy.exporters.parity import match_detections
from mfssd_deploy.exporters.quantize import quantize_int8
from mfssd_deploy.geometry.postprocess import postprocess
from mfssd_deploy.geometry.priors import priors_tensor
from mfssd_deploy.models import build_model

CLASSES = ("a", "b", "c", "d", "e", "f")


def narrow_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    m = build_model("mfssd_bn", 7, width=0.125, class_names=CLASSES).eval()
    with torch.no_grad():  # non-trivial BN statistics, so folding BN into the convs is exercised
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
    return m


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return narrow_model()


@pytest.fixture(scope="module")
def raw(model: torch.nn.Module) -> onnx.ModelProto:
    return ox.simplify(ox.export_raw(model))


def run(proto: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"images": x})


@pytest.mark.parametrize("batch", [1, 3])
def test_raw_matches_pytorch_with_dynamic_batch(model: torch.nn.Module, raw: onnx.ModelProto, batch: int) -> None:
    x = torch.randn(batch, 3, 300, 300)
    loc, scores = run(raw, x.numpy())
    with torch.no_grad():
        ref_loc, ref_conf = model(x)
    assert loc.shape == (batch, 11620, 4) and scores.shape == (batch, 11620, 7)
    np.testing.assert_allclose(loc, ref_loc.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(scores, ref_conf.softmax(-1).numpy(), atol=1e-5, rtol=0)
    assert [i.name for i in raw.graph.input] == ["images"]
    dims = raw.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 300, 300]  # only the batch is dynamic


@pytest.mark.parametrize(
    "nms",
    [
        NMSConfig(),
        NMSConfig(0.05, 0.3, 50, 500),
        NMSConfig(0.2, 0.6, 10, 100),
        NMSConfig(0.5, 0.45, 200, 2000),
    ],
)
def test_end2end_equals_torch_postprocess(model: torch.nn.Module, raw: onnx.ModelProto, nms: NMSConfig) -> None:
    from dataclasses import replace

    cfg = replace(model.config, nms=nms)
    e2e = ox.to_end2end(raw, cfg)
    ox.check(e2e)
    x = torch.randn(4, 3, 300, 300) * 1.5
    x[2] = 0  # a flat image
    outs = run(e2e, x.numpy())
    assert [o.name for o in e2e.graph.output] == ["num_dets", "det_boxes", "det_scores", "det_classes"]
    assert outs[0].dtype == np.int32 and outs[3].dtype == np.int32 and outs[1].shape == (4, nms.max_det, 4)
    with torch.no_grad():
        loc, conf = model(x)
    ref = postprocess(loc, conf.softmax(-1), priors_tensor(cfg.priors), nms)
    result = match_detections(tuple(outs), tuple(t.numpy() for t in ref))
    assert result["ok"], result


def test_end2end_with_no_detection(model: torch.nn.Module, raw: onnx.ModelProto) -> None:
    from dataclasses import replace

    e2e = ox.to_end2end(raw, replace(model.config, nms=NMSConfig(conf_thresh=0.999)))
    num, boxes, scores, classes = run(e2e, np.random.default_rng(0).normal(size=(2, 3, 300, 300)).astype(np.float32))
    assert num.tolist() == [[0], [0]] and not boxes.any() and not scores.any() and not classes.any()


def test_metadata_round_trip(model: torch.nn.Module, raw: onnx.ModelProto) -> None:
    proto = onnx.ModelProto()
    proto.CopyFrom(raw)
    ox.set_metadata(proto, ox.make_metadata(model.config, "raw", "fp32", "abc"))
    meta = ox.read_metadata(proto)
    assert meta["layout"] == "raw" and meta["precision"] == "fp32" and meta["source_sha256"] == "abc"
    assert meta["config"] == model.config.to_dict()
    with pytest.raises(MfssdError, match="no 'mfssd' metadata"):
        ox.read_metadata(raw)


def test_opset_out_of_range(model: torch.nn.Module) -> None:
    with pytest.raises(MfssdError, match="--opset 9 is out of range"):
        ox.export_raw(model, opset=9)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(1)
    for i in range(6):
        img = (rng.random((240 + 20 * i, 320, 3)) * 255).astype(np.uint8)
        cv2.circle(img, (100 + 10 * i, 120), 30, (255, 0, 0), -1)
        cv2.imwrite(str(folder / f"{i}.jpg"), img)
    return folder


def test_int8_is_symmetric_per_channel_qdq(
    model: torch.nn.Module, raw: onnx.ModelProto, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mfssd_deploy.runtime.inputs import list_images

    cache = tmp_path / "calib.json"
    q = quantize_int8(raw, model.config, list_images(images), cache_path=cache)
    ops = Counter(n.op_type for n in q.graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > ops["QuantizeLinear"]
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in q.graph.initializer}
    for n in q.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2:
            assert not inits[n.input[2]].any(), f"{n.name}: zero point must be 0"
    convs = {n.name: n for n in q.graph.node if n.op_type == "Conv"}
    producers = {o: n for n in q.graph.node for o in n.output}
    per_channel = 0
    for conv in convs.values():
        dq = producers.get(conv.input[1])
        assert dq is not None and dq.op_type == "DequantizeLinear", f"{conv.name}: weight is not Q/DQ"
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        scale = inits[dq.input[1]]
        assert axis == 0 and scale.shape == (inits[dq.input[0]].shape[0],)
        per_channel += 1
    assert per_channel == len(convs)
    # Softmax scores and loc are not quantized: the outputs come from float ops.
    assert producers["scores"].op_type == "Softmax"
    assert cache.is_file()
    # The cache is reused for the same model, images and recipe: no calibration pass runs.
    import mfssd_deploy.exporters.quantize as quantize

    def no_reading(self: object) -> None:
        raise AssertionError("calibration images were read although the cache is valid")

    monkeypatch.setattr(quantize._Reader, "get_next", no_reading)
    status: dict = {}
    q2 = quantize_int8(raw, model.config, list_images(images), cache_path=cache, status=status)
    assert len(q2.graph.node) == len(q.graph.node) and status["calibration"] == "reused"
    assert q2.SerializeToString() == q.SerializeToString()
    # No images and a cache for other images: a one-line error, not onnxruntime's ValueError.
    with pytest.raises(MfssdError, match="needs images"):
        quantize_int8(raw, model.config, [], cache_path=cache)
    x = np.random.default_rng(2).normal(size=(1, 3, 300, 300)).astype(np.float32)
    (loc8, s8), (loc32, s32) = run(q, x), run(raw, x)
    assert np.abs(s8 - s32).max() < 0.2 and np.corrcoef(loc8.ravel(), loc32.ravel())[0, 1] > 0.95


def test_int8_u8_activations_for_onnx_runtime_cpu(model: torch.nn.Module, raw: onnx.ModelProto, images: Path) -> None:
    """The CPU-tuned variant: uint8 activations with real zero points, int8 symmetric weights, same accuracy."""
    from mfssd_deploy.exporters.trt_lint import lint, tables
    from mfssd_deploy.runtime.inputs import list_images

    q = quantize_int8(raw, model.config, list_images(images), activations="u8")
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in q.graph.initializer}
    zero_points = [inits[n.input[2]] for n in q.graph.node if n.op_type == "QuantizeLinear"]
    assert zero_points and all(z.dtype == np.uint8 for z in zero_points) and any(z.any() for z in zero_points)
    assert not any(n.op_type == "Relu" for n in q.graph.node)  # folded into the convs' uint8 outputs
    assert any(n.op_type == "Relu" for n in quantize_int8(raw, model.config, list_images(images)).graph.node)
    producers = {o: n for n in q.graph.node for o in n.output}
    conv = next(n for n in q.graph.node if n.op_type == "Conv")
    weight_zp = inits[producers[conv.input[1]].input[2]]
    assert weight_zp.dtype == np.int8 and not weight_zp.any()
    x = np.random.default_rng(2).normal(size=(1, 3, 300, 300)).astype(np.float32)
    (loc8, s8), (loc32, s32) = run(q, x), run(raw, x)
    assert np.abs(s8 - s32).max() < 0.2 and np.corrcoef(loc8.ravel(), loc32.ravel())[0, 1] > 0.95
    # TensorRT rejects it (that is why it is a separate, CPU-only artifact)
    assert any("zero point" in str(p) for p in lint(q, next(iter(tables()))))
    with pytest.raises(MfssdError, match="choose s8"):
        quantize_int8(raw, model.config, [], activations="u4")


def test_int8_keep_fp32_nodes(model: torch.nn.Module, raw: onnx.ModelProto, images: Path) -> None:
    from mfssd_deploy.exporters.quantize import resolve_nodes
    from mfssd_deploy.runtime.inputs import list_images

    keep = resolve_nodes(raw, ["first-conv", "heads"])
    assert len(keep) == 1 + 12  # the first conv and 6 loc + 6 conf heads
    q = quantize_int8(raw, model.config, list_images(images), keep_fp32=["first-conv", "heads"])
    producers = {o: n for n in q.graph.node for o in n.output}
    for n in q.graph.node:
        if n.op_type == "Conv" and n.name in keep:
            assert n.input[1] in {i.name for i in q.graph.initializer}  # FP32 weight, no DequantizeLinear
        elif n.op_type == "Conv":
            assert producers[n.input[1]].op_type == "DequantizeLinear"
    with pytest.raises(MfssdError, match="not a node of the model"):
        resolve_nodes(raw, ["nope"])


def test_fp16_numerics_on_cpu(model: torch.nn.Module, raw: onnx.ModelProto) -> None:
    from mfssd_deploy.exporters.fp16 import to_fp16

    f16 = to_fp16(raw)
    ins = {i.name: i.type.tensor_type.elem_type for i in f16.graph.input}
    outs = {o.name: o.type.tensor_type.elem_type for o in f16.graph.output}
    assert ins == {"images": onnx.TensorProto.FLOAT}
    assert outs == {"loc": onnx.TensorProto.FLOAT, "scores": onnx.TensorProto.FLOAT}
    conv_w = [i for i in f16.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert len(conv_w) > 30  # the weights are FP16
    x = np.random.default_rng(3).normal(size=(2, 3, 300, 300)).astype(np.float32)
    (loc16, s16), (loc32, s32) = run(f16, x), run(raw, x)
    assert np.abs(s16 - s32).max() < 2e-3 and np.abs(loc16 - loc32).max() < 2e-2
    e2e = ox.to_end2end(f16, model.config)
    ox.check(e2e)
    assert run(e2e, x)[0].shape == (2, 1)


def test_cli_writes_artifacts_and_fails_loudly(
    model: torch.nn.Module, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt = save_checkpoint(tmp_path / "tiny.pt", model)
    out = tmp_path / "export"
    args = ["--model", str(ckpt), "--out-dir", str(out), "--parity-images", str(images)]
    assert export_main([*args, "--int8", "--int8-cpu", "--calib", str(images), "--json", str(tmp_path / "r.json")]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "tiny.end2end.onnx",
        "tiny.int8.calib.json",
        "tiny.int8.end2end.onnx",
        "tiny.int8.onnx",
        "tiny.int8u8.calib.json",
        "tiny.int8u8.end2end.onnx",
        "tiny.int8u8.onnx",
        "tiny.onnx",
    ]
    meta_u8 = ox.read_metadata(onnx.load(out / "tiny.int8u8.end2end.onnx"))
    assert meta_u8["precision"] == "int8-qdq-u8" and meta_u8["calibration"]["method"] == "minmax"
    meta = ox.read_metadata(onnx.load(out / "tiny.int8.end2end.onnx"))
    assert meta["layout"] == "end2end" and meta["precision"] == "int8-qdq" and meta["opset"] == 17
    import json

    report = json.loads((tmp_path / "r.json").read_text())
    fp32 = [a for a in report["artifacts"] if a["precision"] == "fp32"]
    assert all(a["parity"]["ok"] for a in fp32) and len(fp32) == 2
    # A parity failure: nothing written, one-line error, non-zero exit.
    import mfssd_deploy.exporters.pipeline as pipeline

    monkeypatch.setattr(pipeline, "RAW_TOL", 0.0)
    out2 = tmp_path / "export2"
    code = run_cli(
        "mfssd-export",
        export_main,
        ["--model", str(ckpt), "--out-dir", str(out2), "--parity-images", str(images), "--raw"],
    )
    assert code == 2 and not (out2 / "tiny.onnx").exists()
