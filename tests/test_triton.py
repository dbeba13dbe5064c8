"""Triton model repositories: every config.pbtxt parsed with tritonclient's model_config_pb2 and
checked against the ONNX model it serves (names, types, dims from a real ONNX Runtime run)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mfssd_deploy.errors import MfssdError
from mfssd_deploy.serving.repository import TritonOptions, add_engine, add_onnx

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
            "--batch-profile", "1,4,8"]  # fmt: skip
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


# -------------------------------------------------------- the python kind (a real server loads it: test_serving.py)


def test_python_kind_configs_follow_the_serving_contract(artifacts: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    from mfssd_deploy.serving import contract
    from mfssd_deploy.serving.repository import PythonModelOptions, add_python

    opts = TritonOptions(kind="cpu", instances=3, max_batch=8, preferred=(4, 8), max_queue_delay_us=700)
    dirs = add_python(tmp_path, artifacts["raw"], opts, PythonModelOptions(backend="openvino", threads=2,
                                                                          max_image_mb=5))  # fmt: skip
    assert [d.name for d in dirs] == ["m", "m_image"]
    tensor, image = (parse(d) for d in dirs)
    for cfg, d in zip((tensor, image), dirs, strict=True):
        assert cfg.backend == "python" and not cfg.platform and cfg.max_batch_size == 8
        assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8] and cfg.instance_group[0].count == 3
        assert (d / "1" / "m.onnx").read_bytes() == artifacts["raw"].read_bytes()
        code = (d / "1" / "model.py").read_text()
        assert "from mfssd_deploy.serving.python_model import TritonPythonModel" in code
        compile(code, "model.py", "exec")
        params = {k: v.string_value for k, v in cfg.parameters.items()}
        assert params[contract.PARAM_ARTIFACT] == "m.onnx" and params[contract.PARAM_BACKEND] == "openvino"
        assert params[contract.PARAM_THREADS] == "2" and params[contract.PARAM_MAX_IMAGE_BYTES] == "5000000"
        meta = json.loads(params["mfssd"])
        assert meta["layout"] == "end2end" and meta["artifact_layout"] == "raw"  # decoded on the server
    assert {k: v.string_value for k, v in tensor.parameters.items()}[contract.PARAM_ROLE] == "tensor"
    assert [(i.name, pb.DataType.Name(i.data_type), list(i.dims)) for i in tensor.input] == [
        ("images", "TYPE_FP32", [3, 300, 300])]  # fmt: skip
    # the tensor model answers like the end2end ONNX: compare with that file's outputs
    check_against_onnx_outputs(tensor, artifacts["e2e"])
    assert [(i.name, pb.DataType.Name(i.data_type), list(i.dims), i.allow_ragged_batch, i.optional)
            for i in image.input] == [("image", "TYPE_UINT8", [-1], True, False),
                                      ("image_length", "TYPE_INT32", [1], False, True)]  # fmt: skip
    assert [o.name for o in image.output] == list(contract.IMAGE_OUTPUTS)
    assert [list(o.dims) for o in image.output] == [[1], [200, 4], [200], [200], [2], [-1]]


def check_against_onnx_outputs(cfg, onnx_path: Path) -> None:  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    outs = dict(zip([o.name for o in session.get_outputs()],
                    session.run(None, {"images": np.zeros((1, 3, 300, 300), np.float32)}), strict=True))  # fmt: skip
    assert [o.name for o in cfg.output] == list(outs)
    for o in cfg.output:
        assert list(o.dims) == list(outs[o.name].shape[1:])
        assert pb.DataType.Name(o.data_type) == TYPES[outs[o.name].dtype]


def test_repository_kinds_choose_their_artifacts(artifacts: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    from mfssd_deploy.serving.repository import write_repository

    onnx = [artifacts[k] for k in ("raw", "e2e", "int8")]
    made = make_engine(tmp_path, artifacts["e2e"], batch=(1, 4))
    engine = tmp_path / "m.end2end.int8.engine"  # named as mfssd-export --trt names it
    made.rename(engine)
    made.with_name(made.name + ".json").rename(engine.with_name(engine.name + ".json"))
    gpu = TritonOptions(kind="gpu", max_batch=16, preferred=(8, 16))
    assert write_repository(tmp_path / "ort", onnx, [engine], gpu) == ["m", "m_end2end", "m_int8_end2end",
                                                                       "m_end2end_int8"]  # fmt: skip
    assert parse(tmp_path / "ort" / "m_end2end_int8").platform == "tensorrt_plan"
    assert write_repository(tmp_path / "trt", onnx, [engine], gpu, kind="tensorrt") == ["m_end2end_int8"]
    assert parse(tmp_path / "trt" / "m_end2end_int8").max_batch_size == 4  # the engine's profile
    py = write_repository(tmp_path / "py", onnx, [engine], gpu, kind="python")
    # raw left out (it would need torch on the server); end2end files and the engine as tensor + image models
    assert py == ["m_end2end", "m_end2end_image", "m_int8_end2end", "m_int8_end2end_image", "m_end2end_int8",
                  "m_end2end_int8_image"]  # fmt: skip
    plan = parse(tmp_path / "py" / "m_end2end_int8_image")
    assert plan.backend == "python" and plan.max_batch_size == 4
    assert pb.ModelInstanceGroup.Kind.Name(plan.instance_group[0].kind) == "KIND_GPU"
    assert (tmp_path / "py" / "m_end2end_int8" / "1" / f"{engine.name}.json").is_file()  # the sidecar travels
    cpu = write_repository(tmp_path / "cpu", onnx, [engine], TritonOptions(kind="cpu"), kind="python")
    assert cpu == ["m_end2end", "m_end2end_image", "m_int8_end2end", "m_int8_end2end_image"]  # engines: GPU only
    with pytest.raises(MfssdError, match="add --trt"):
        write_repository(tmp_path / "x", onnx, [], gpu, kind="tensorrt")
    with pytest.raises(MfssdError, match="choose one of onnxruntime, tensorrt, python"):
        write_repository(tmp_path / "x", onnx, [], gpu, kind="pytorch")
