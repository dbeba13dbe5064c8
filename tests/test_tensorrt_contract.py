"""Contract tests of our TensorRT code against a recording fake `tensorrt` (no GPU, no TensorRT here).

They prove our branching per TensorRT line and precision (which ONNX, which flags, which profile,
what is written), not TensorRT's behaviour.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mfssd_deploy.checkpoint import save_checkpoint
from mfssd_deploy.engine_meta import check_engine_compat, import_tensorrt, read_engine_meta
from mfssd_deploy.errors import MfssdError, MissingExtraError
from mfssd_deploy.exporters.tensorrt_build import BuildRequest, build_engine, plan_build
from mfssd_deploy.models import build_model

from fake_tensorrt import make_fake_tensorrt

pytestmark = pytest.mark.contract
GPU_ORIN = ("Orin", (8, 7))
GPU_1080TI = ("NVIDIA GeForce GTX 1080 Ti", (6, 1))


@pytest.mark.parametrize(
    ("version", "precision", "source", "explicit", "strong", "flags"),
    [
        ("8.5.2", "fp32", "fp32", True, False, ()),
        ("8.6.1", "fp16", "fp32", True, False, ("FP16",)),
        ("8.6.1", "int8", "int8", True, False, ("INT8", "FP16")),
        ("10.3.0", "fp32", "fp32", False, False, ()),
        ("10.3.0", "fp16", "fp32", False, False, ("FP16",)),
        ("10.13.0", "int8", "int8", False, False, ("INT8", "FP16")),
        ("11.0.0", "fp32", "fp32", False, True, ()),
        ("11.0.0", "fp16", "fp16", False, True, ()),
        ("11.1.0", "int8", "int8", False, True, ()),
    ],
)
def test_plan_per_version_and_precision(version, precision, source, explicit, strong, flags) -> None:  # type: ignore[no-untyped-def]
    plan = plan_build(version, precision, compute_capability=(8, 6))
    assert (plan.onnx_source, plan.explicit_batch_flag, plan.strongly_typed, plan.builder_flags) == (
        source,
        explicit,
        strong,
        flags,
    )


def test_plan_pascal_and_dla_rules() -> None:
    p = plan_build("8.6.1", "fp16", compute_capability=(6, 1))
    assert p.warnings and "1/64" in p.warnings[0]
    assert plan_build("8.6.1", "int8", compute_capability=(6, 1)).builder_flags == ("INT8",)  # no FP16 on Pascal
    with pytest.raises(MfssdError, match=r"8\.6 is the last TensorRT for Pascal"):
        plan_build("10.3.0", "int8", compute_capability=(6, 1))
    assert plan_build("10.3.0", "int8", dla_core=0).builder_flags == ("INT8", "FP16", "GPU_FALLBACK")
    with pytest.raises(MfssdError, match="DLA runs FP16 or INT8 only"):
        plan_build("8.5.2", "fp32", dla_core=0)
    with pytest.raises(MfssdError, match="not shipped for Jetson"):
        plan_build("11.0.0", "fp16", dla_core=1)
    with pytest.raises(MfssdError, match="too old"):
        plan_build("8.4.3", "fp16")


@pytest.fixture(scope="module")
def onnx_files(artifacts: dict[str, Path]) -> dict[str, Path]:
    return {"fp32": artifacts["e2e"], "int8": artifacts["int8"], "fp16": artifacts["fp16"]}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    def install(version: str, **kw: bool):  # type: ignore[no-untyped-def]
        trt = make_fake_tensorrt(version, **kw)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        return trt

    return install


@pytest.mark.parametrize(
    ("version", "precision", "parsed", "net_flags", "set_flags"),
    [
        ("8.6.1", "fp16", "fp32", 1 << 0, ["FP16"]),
        ("8.6.1", "int8", "int8", 1 << 0, ["INT8", "FP16"]),
        ("10.3.0", "fp16", "fp32", 0, ["FP16"]),
        ("10.3.0", "int8", "int8", 0, ["INT8", "FP16"]),
        ("11.0.0", "fp16", "fp16", 1 << 1, []),
        ("11.0.0", "int8", "int8", 1 << 1, []),
        ("11.0.0", "fp32", "fp32", 1 << 1, []),
    ],
)
def test_build_engine_calls(fake, onnx_files, tmp_path, version, precision, parsed, net_flags, set_flags) -> None:  # type: ignore[no-untyped-def]
    trt = fake(version)
    out = tmp_path / "m.engine"
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"OLD")
    meta = build_engine(
        BuildRequest(
            onnx=onnx_files, out=out, precision=precision, batch=(1, 4, 8), workspace_gb=1.0, timing_cache=cache
        ),
        gpu=GPU_ORIN,
    )
    calls = trt.calls
    assert ("builder.create_network", net_flags) in calls
    assert [c[1] for c in calls if c[0] == "config.set_flag"] == set_flags
    assert ("parser.parse", onnx_files[parsed].stat().st_size) in calls
    assert ("config.set_memory_pool_limit", "WORKSPACE", 1 << 30) in calls
    assert ("profile.set_shape", "images", (1, 3, 300, 300), (4, 3, 300, 300), (8, 3, 300, 300)) in calls
    assert ("config.create_timing_cache", b"OLD") in calls
    assert out.read_bytes() == b"ENGINE-" + version.encode()
    assert cache.read_bytes() == b"TIMING:OLD"
    saved = read_engine_meta(out)
    assert saved == json.loads(json.dumps(meta))
    assert (
        saved["tensorrt_version"] == version and saved["gpu_name"] == "Orin" and saved["compute_capability"] == [8, 7]
    )
    assert saved["layout"] == "end2end" and saved["precision"] == precision and saved["config"]["num_classes"] == 4
    assert saved["profiles"]["images"]["max"] == [8, 3, 300, 300]


def test_build_engine_dla(fake, onnx_files, tmp_path) -> None:  # type: ignore[no-untyped-def]
    trt = fake("10.3.0")
    build_engine(BuildRequest(onnx=onnx_files, out=tmp_path / "d.engine", precision="int8", dla_core=1), gpu=GPU_ORIN)
    assert ("config.default_device_type", "DLA") in trt.calls and ("config.DLA_core", 1) in trt.calls
    assert ("config.set_flag", "GPU_FALLBACK") in trt.calls


def test_build_engine_failures_are_clear(fake, onnx_files, tmp_path) -> None:  # type: ignore[no-untyped-def]
    fake("8.6.1", parse_ok=False)
    with pytest.raises(MfssdError, match=r"could not parse .*UNSUPPORTED_NODE"):
        build_engine(BuildRequest(onnx=onnx_files, out=tmp_path / "a.engine", precision="fp16"), gpu=GPU_1080TI)
    fake("8.6.1", build_ok=False)
    with pytest.raises(MfssdError, match="failed to build"):
        build_engine(BuildRequest(onnx=onnx_files, out=tmp_path / "b.engine", precision="int8"), gpu=GPU_1080TI)
    assert not (tmp_path / "b.engine").exists()
    fake("11.0.0")
    with pytest.raises(MfssdError, match="builds fp16 from the fp16 ONNX: export it"):
        build_engine(
            BuildRequest(onnx={"fp32": onnx_files["fp32"]}, out=tmp_path / "c.engine", precision="fp16"), gpu=GPU_ORIN
        )


def test_missing_tensorrt_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails
    with pytest.raises(MissingExtraError, match=r'pip install "mfssd-deploy\[trt\]"'):
        import_tensorrt()
    import types

    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))  # stubs only: empty package
    with pytest.raises(MissingExtraError, match="only its type stubs"):
        import_tensorrt()


def test_cli_writes_onnx_then_fails_without_tensorrt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import cv2
    import numpy as np

    from mfssd_deploy.cli import run_cli
    from mfssd_deploy.cli.export import main

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    ckpt = save_checkpoint(tmp_path / "m.pt", build_model("mfssd_bn", 3, width=0.125, class_names=("a", "b")))
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    cv2.imwrite(str(imgs / "0.jpg"), np.zeros((100, 100, 3), np.uint8))
    code = run_cli(
        "mfssd-export",
        main,
        [
            "--model",
            str(ckpt),
            "--out-dir",
            str(tmp_path / "x"),
            "--parity-images",
            str(imgs),
            "--trt",
            "--engines-dir",
            str(tmp_path / "e"),
        ],
    )
    assert code == 2
    assert 'pip install "mfssd-deploy[trt]"' in capsys.readouterr().err
    assert (tmp_path / "x" / "m.onnx").is_file() and (tmp_path / "x" / "m.end2end.onnx").is_file()
    assert (tmp_path / "x" / "m.fp16.end2end.onnx").is_file()  # for TensorRT 11, written ahead


def test_engine_compat_check(tmp_path: Path) -> None:
    meta = {
        "tensorrt_version": "8.6.1",
        "gpu_name": "NVIDIA GeForce GTX 1080 Ti",
        "compute_capability": [6, 1],
    }
    check_engine_compat(meta, "m.engine", "8.6.1", "NVIDIA GeForce GTX 1080 Ti", (6, 1))
    with pytest.raises(MfssdError, match=r"built with TensorRT 8\.6\.1 but TensorRT 10\.3\.0 is installed"):
        check_engine_compat(meta, "m.engine", "10.3.0", "NVIDIA GeForce GTX 1080 Ti", (6, 1))
    with pytest.raises(
        MfssdError, match=r"built for NVIDIA GeForce GTX 1080 Ti \(sm_61\) but this GPU is Orin \(sm_87\)"
    ):
        check_engine_compat(meta, "m.engine", "8.6.1", "Orin", (8, 7))
    with pytest.raises(MfssdError, match="has no metadata file"):
        (tmp_path / "x.engine").write_bytes(b"x")
        read_engine_meta(tmp_path / "x.engine")
