"""Triton model repositories: every config.pbtxt parsed with tritonclient's model_config_pb2 and
checked against the ONNX model it serves (names, types, dims from a real ONNX Runtime run)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mfssd_deploy.errors import MfssdError
from mfssd_deploy.exporters.triton import TritonOptions, add_engine, add_onnx

from helpers import make_engine

pb = pytest.importorskip("tritonclient.grpc.model_config_pb2")
TYPES = {np.dtype(np.float32): "TYPE_FP32", np.dtype(np.int32): "TYPE_INT32"}


def parse(model_dir: Path):  # type: ignore[no-untyped-def]
    from google.protobuf import text_format

    return text_format.Parse((model_dir / "config.pbtxt").read_text(), pb.ModelConfig())


def check_against_onnx(cfg, onnx_path: Path) -> None:  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    from mfssd_deploy.exporters.onnx_export import read_metadata

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (inp,) = cfg.input
    assert inp.name == session.get_inputs()[0].name == "images"
    assert pb.DataType.Name(inp.data_type) == "TYPE_FP32" and list(inp.dims) == [3, 300, 300]
    x = np.zeros((2, 3, 300, 300), np.float32)
    outs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"images": x}), strict=True))
    assert [o.name for o in cfg.output] == list(outs)
    for o in cfg.output:
        arr = outs[o.name]
        assert list(o.dims) == list(arr.shape[1:]), o.name  # dims without the batch axis
        assert pb.DataType.Name(o.data_type) == TYPES[arr.dtype], o.name
    import onnx

    assert json.loads(cfg.parameters["mfssd"].string_value) == read_metadata(onnx.load(str(onnx_path)))


@pytest.mark.parametrize("key", ["raw", "e2e", "int8", "fp16"])
def test_onnx_models_match_their_files(artifacts: dict, tmp_path: Path, key: str) -> None:  # type: ignore[type-arg]
    opts = TritonOptions(kind="gpu", instances=2, max_batch=16, preferred=(8, 16), max_queue_delay_us=500,
                         trt_accelerator=True, gpus=(0, 1))  # fmt: skip
    model_dir = add_onnx(tmp_path, artifacts[key], opts)
    cfg = parse(model_dir)
    assert cfg.name == model_dir.name and cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 16
    assert (model_dir / "1" / "model.onnx").read_bytes() == artifacts[key].read_bytes()
    check_against_onnx(cfg, artifacts[key])
    (group,) = cfg.instance_group
    assert group.count == 2 and pb.ModelInstanceGroup.Kind.Name(group.kind) == "KIND_GPU" and list(group.gpus) == [0, 1]
    assert list(cfg.dynamic_batching.preferred_batch_size) == [8, 16]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 500
    (acc,) = cfg.optimization.execution_accelerators.gpu_execution_accelerator
    assert acc.name == "tensorrt" and acc.parameters["precision_mode"] == ("INT8" if key == "int8" else "FP16")


def test_cpu_instances_and_engine_plans(artifacts: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    cpu = parse(add_onnx(tmp_path, artifacts["e2e"], TritonOptions(kind="cpu", trt_accelerator=True)))
    assert pb.ModelInstanceGroup.Kind.Name(cpu.instance_group[0].kind) == "KIND_CPU"
    assert not cpu.optimization.execution_accelerators.gpu_execution_accelerator  # TensorRT EP is GPU-only
    engine = make_engine(tmp_path, artifacts["e2e"], batch=(1, 4))
    plan_dir = add_engine(tmp_path / "repo", engine, TritonOptions(preferred=(8, 16)))
    plan = parse(plan_dir)
    assert plan.platform == "tensorrt_plan" and plan.max_batch_size == 4  # the engine's profile, not the option
    assert list(plan.dynamic_batching.preferred_batch_size) == [4]
    assert (plan_dir / "1" / "model.plan").read_bytes() == engine.read_bytes()
    assert json.loads(plan.parameters["mfssd"].string_value)["tensorrt_version"] == "10.3.0"
    assert [o.name for o in plan.output] == ["num_dets", "det_boxes", "det_scores", "det_classes"]
    with pytest.raises(MfssdError, match="GPU instance group only"):
        add_engine(tmp_path / "r2", engine, TritonOptions(kind="cpu"))


def test_cli_writes_a_repository_and_skips_cpu_only_int8_on_gpu(artifacts: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    from mfssd_deploy.cli.export import main as export_main

    repo = tmp_path / "repo"
    args = ["--model", str(artifacts["pt"]), "--out-dir", str(tmp_path / "x"), "--end2end", "--int8", "--int8-cpu",
            "--calib", str(artifacts["imgs"]), "--parity-images", str(artifacts["imgs"]), "--triton", str(repo),
            "--batch", "1,4,8"]  # fmt: skip
    assert export_main(args) == 0
    names = sorted(p.name for p in repo.iterdir())
    assert names == ["m_end2end", "m_int8_end2end"]  # the uint8-activation model is CPU-only
    cfg = parse(repo / "m_int8_end2end")
    assert cfg.max_batch_size == 8 and list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]
    check_against_onnx(cfg, tmp_path / "x" / "m.int8.end2end.onnx")
    assert export_main([*args, "--triton-device", "cpu"]) == 0
    assert (repo / "m_int8u8_end2end" / "config.pbtxt").is_file()


def test_bad_options_are_refused(artifacts: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    with pytest.raises(MfssdError, match="preferred <= max_batch"):
        add_onnx(tmp_path, artifacts["e2e"], TritonOptions(max_batch=4, preferred=(8,)))
