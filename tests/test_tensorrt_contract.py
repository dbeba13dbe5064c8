"""Contract tests of our TensorRT code against a recording fake `tensorrt` (no GPU, no TensorRT here).

They prove our branching per TensorRT line and precision (which ONNX, which flags, which profile,
what is written), not TensorRT's behaviour.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from mfssd_deploy.checkpoint import save_checkpoint
from mfssd_deploy.errors import MfssdError, MissingExtraError
from mfssd_deploy.exporters.tensorrt_build import (
    POSTPROCESS_PREFIX,
    BuildRequest,
    build_engine,
    plan_build,
    timing_cache_path,
)
from mfssd_deploy.models import build_model
from mfssd_deploy.runtime.engine_meta import check_engine_compat, import_tensorrt, read_engine_meta

from fake_tensorrt import make_fake_tensorrt

pytestmark = pytest.mark.contract
GPU_ORIN = ("Orin", (8, 7))
GPU_1080TI = ("NVIDIA GeForce GTX 1080 Ti", (6, 1))


OBEY = "OBEY_PRECISION_CONSTRAINTS"


@pytest.mark.parametrize(
    ("version", "precision", "source", "net_flags", "strong", "flags"),
    [
        ("8.5.2", "fp32", "fp32", ("EXPLICIT_BATCH",), False, ()),
        ("8.6.1", "fp16", "fp32", ("EXPLICIT_BATCH",), False, ("FP16", OBEY)),
        ("8.6.1", "int8", "int8", ("EXPLICIT_BATCH",), False, ("INT8", "FP16", OBEY)),
        ("10.3.0", "fp32", "fp32", (), False, ()),
        ("10.3.0", "fp16", "fp32", (), False, ("FP16", OBEY)),
        ("10.13.0", "int8", "int8", (), False, ("INT8", "FP16", OBEY)),
        ("11.0.0", "fp32", "fp32", (), True, ()),  # strongly typed always: kSTRONGLY_TYPED is deprecated, ignored
        ("11.0.0", "fp16", "fp16", (), True, ()),
        ("11.1.0", "int8", "int8", (), True, ()),
    ],
)
def test_plan_per_version_and_precision(version, precision, source, net_flags, strong, flags) -> None:  # type: ignore[no-untyped-def]
    plan = plan_build(version, precision, compute_capability=(8, 6))
    assert (plan.onnx_source, plan.network_flags, plan.strongly_typed, plan.builder_flags) == (
        source,
        net_flags,
        strong,
        flags,
    )
    assert plan.fp32_postprocess == ("FP16" in flags)  # weakly typed FP16: decode/TopK/NMS pinned to FP32


def test_plan_pascal_and_dla_rules() -> None:
    p = plan_build("8.6.1", "fp16", compute_capability=(6, 1))
    assert p.warnings and "1/64" in p.warnings[0]
    assert plan_build("8.6.1", "int8", compute_capability=(6, 1)).builder_flags == ("INT8",)  # no FP16 on sm_61
    # sm_60 (P100) has full-rate FP16 (128 FP16 vs 64 FP32 results per clock per SM): no warning, FP16 kept
    assert not plan_build("8.6.1", "fp16", compute_capability=(6, 0)).warnings
    assert plan_build("8.6.1", "int8", compute_capability=(6, 0)).builder_flags == ("INT8", "FP16", OBEY)
    for cc in ((6, 0), (6, 1)):
        with pytest.raises(MfssdError, match=r"8\.6 is the last TensorRT for Pascal"):
            plan_build("10.3.0", "int8", compute_capability=cc)
    dla = plan_build("10.3.0", "int8", dla_core=0)
    assert dla.builder_flags == ("INT8", "FP16", OBEY, "GPU_FALLBACK") and dla.static_batch
    assert plan_build("8.6.1", "fp16", dla_core=1).builder_flags == ("FP16", OBEY, "GPU_FALLBACK")
    with pytest.raises(MfssdError, match="DLA runs FP16 or INT8 only"):
        plan_build("8.5.2", "fp32", dla_core=0)
    with pytest.raises(MfssdError, match=r"8\.6\.1 runs no Q/DQ .*INT8 on the DLA: use --precision fp16"):
        plan_build("8.6.1", "int8", dla_core=0)
    with pytest.raises(MfssdError, match=r"10\.7 was the last 10\.x with DLA"):
        plan_build("10.13.0", "fp16", dla_core=0)
    for v in ("11.0.0", "11.3.1", "11.4.0"):
        with pytest.raises(MfssdError, match=r"has no DLA for Jetson .*11\.4\.1\+ on AGX Orin"):
            plan_build(v, "fp16", dla_core=1)
    p11 = plan_build("11.4.1", "fp16", dla_core=0)  # JetPack 7.2.2+ on AGX Orin: strongly typed, FP16 ONNX
    assert (p11.onnx_source, p11.builder_flags, p11.static_batch) == ("fp16", ("GPU_FALLBACK",), True)
    assert plan_build("11.4.1", "int8", dla_core=0).onnx_source == "int8"
    with pytest.raises(MfssdError, match="too old"):
        plan_build("8.4.3", "fp16")


@pytest.fixture(scope="module")
def onnx_files(artifacts: dict[str, Path]) -> dict[str, Path]:
    return {"fp32": artifacts["e2e"], "int8": artifacts["int8"], "fp16": artifacts["fp16"]}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    def install(version: str, **kw: Any):  # type: ignore[no-untyped-def]
        trt = make_fake_tensorrt(version, **kw)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        return trt

    return install


@pytest.mark.parametrize(
    ("version", "precision", "parsed", "net_flags", "set_flags"),
    [
        ("8.6.1", "fp16", "fp32", 1 << 0, ["FP16", OBEY]),
        ("8.6.1", "int8", "int8", 1 << 0, ["INT8", "FP16", OBEY]),
        ("10.3.0", "fp16", "fp32", 0, ["FP16", OBEY]),
        ("10.3.0", "int8", "int8", 0, ["INT8", "FP16", OBEY]),
        ("11.0.0", "fp16", "fp16", 0, []),  # no deprecated kSTRONGLY_TYPED (= 0 on 11.x): always strongly typed
        ("11.0.0", "int8", "int8", 0, []),
        ("11.0.0", "fp32", "fp32", 0, []),
    ],
)
def test_build_engine_calls(fake, onnx_files, tmp_path, version, precision, parsed, net_flags, set_flags) -> None:  # type: ignore[no-untyped-def]
    trt = fake(version)
    out = tmp_path / "m.engine"
    meta = build_engine(
        BuildRequest(onnx=onnx_files, out=out, precision=precision, batch=(1, 4, 8), workspace_gb=1.0),
        gpu=GPU_ORIN,
    )
    calls = trt.calls
    assert ("builder.create_network", net_flags) in calls
    assert [c[1] for c in calls if c[0] == "config.set_flag"] == set_flags
    assert ("parser.parse", onnx_files[parsed].stat().st_size) in calls
    assert ("config.set_memory_pool_limit", "WORKSPACE", 1 << 30) in calls
    assert ("profile.set_shape", "images", (1, 3, 300, 300), (4, 3, 300, 300), (8, 3, 300, 300)) in calls
    assert out.read_bytes() == b"ENGINE-" + version.encode()
    saved = read_engine_meta(out)
    assert saved == json.loads(json.dumps(meta))
    assert (
        saved["tensorrt_version"] == version and saved["gpu_name"] == "Orin" and saved["compute_capability"] == [8, 7]
    )
    assert saved["layout"] == "end2end" and saved["precision"] == precision and saved["config"]["num_classes"] == 4
    assert saved["profiles"]["images"]["max"] == [8, 3, 300, 300]


def e2e_layers(trt: Any) -> list[Any]:
    return [la for la in trt.networks[-1].layers if la.name.startswith(POSTPROCESS_PREFIX)]


@pytest.mark.parametrize(("version", "precision"), [("8.6.1", "fp16"), ("10.3.0", "fp16"), ("10.3.0", "int8")])
def test_weakly_typed_fp16_keeps_decode_topk_nms_in_fp32(fake, onnx_files, tmp_path, version, precision) -> None:  # type: ignore[no-untyped-def]
    trt = fake(version)
    meta = build_engine(BuildRequest(onnx=onnx_files, out=tmp_path / "p.engine", precision=precision), gpu=GPU_ORIN)
    post = e2e_layers(trt)
    assert {"TopK", "NonMaxSuppression"} <= {la.type for la in post}
    floats = {trt.DataType.FLOAT, trt.DataType.HALF}
    for la in post:
        float_outs = [i for i in range(la.num_outputs) if la.get_output(i).dtype in floats]
        if float_outs:  # every floating-point post-processing layer computes and outputs FP32
            assert la.precision_is_set and la.precision == trt.DataType.FLOAT, la.name
            assert la.output_types == dict.fromkeys(float_outs, trt.DataType.FLOAT), la.name
        else:  # TopK indices, shapes, casts to int: nothing to pin
            assert not la.precision_is_set and not la.output_types, la.name
    assert not any(la.precision_is_set for la in trt.networks[-1].layers if la not in post)  # the backbone is free
    assert ("config.set_flag", OBEY) in trt.calls and meta["fp32_postprocess_layers"] == len(post)


def test_strongly_typed_fp16_onnx_has_fp32_postprocessing(fake, onnx_files, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import onnx

    trt = fake("11.0.0")  # its network rejects setPrecision / setOutputType: the types come from the ONNX
    build_engine(BuildRequest(onnx=onnx_files, out=tmp_path / "s.engine", precision="fp16"), gpu=GPU_ORIN)
    assert not any(la.precision_is_set for la in trt.networks[-1].layers)
    post = e2e_layers(trt)
    assert post and all(la.get_output(i).dtype != trt.DataType.HALF for la in post for i in range(la.num_outputs))
    g = onnx.shape_inference.infer_shapes(onnx.load(onnx_files["fp16"])).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.output]}
    e2e_outs = [o for n in g.node if n.name.startswith(POSTPROCESS_PREFIX) for o in n.output]
    assert e2e_outs and onnx.TensorProto.FLOAT16 not in {types.get(o) for o in e2e_outs}
    assert any(types.get(o) == onnx.TensorProto.FLOAT16 for n in g.node for o in n.output)  # the backbone is FP16


def test_build_engine_dla(fake, onnx_files, tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    trt = fake("10.3.0", num_dla_cores=2)
    with caplog.at_level(logging.WARNING):
        meta = build_engine(BuildRequest(onnx=onnx_files, out=tmp_path / "d.engine", precision="fp16", dla_core=1),
                            gpu=GPU_ORIN)  # fmt: skip
    assert ("config.default_device_type", "DLA") in trt.calls and ("config.DLA_core", 1) in trt.calls
    assert ("config.set_flag", "GPU_FALLBACK") in trt.calls
    # DLA has no dynamic shapes: the default 1,8,16 becomes 8,8,8, said in one line
    assert ("profile.set_shape", "images", (8, 3, 300, 300), (8, 3, 300, 300), (8, 3, 300, 300)) in trt.calls
    assert "DLA has no dynamic shapes: building batch 8 only" in caplog.text
    assert meta["profiles"]["images"]["min"] == meta["profiles"]["images"]["max"] == [8, 3, 300, 300]
    config_devices = {la.name for la in e2e_layers(trt)}  # decode/TopK/NMS on the GPU, in FP32
    assert config_devices and all(la.precision == trt.DataType.FLOAT for la in e2e_layers(trt) if la.precision_is_set)
    fake("10.3.0", num_dla_cores=1)
    with pytest.raises(MfssdError, match=r"--dla-core 1: this device has 1 DLA core \(0\.\.0\)"):
        build_engine(BuildRequest(onnx=onnx_files, out=tmp_path / "e.engine", dla_core=1), gpu=GPU_ORIN)
    fake("10.3.0")
    with pytest.raises(MfssdError, match="--dla-core 0: this device has 0 DLA cores;"):
        build_engine(BuildRequest(onnx=onnx_files, out=tmp_path / "f.engine", dla_core=0), gpu=GPU_ORIN)
    fake("8.6.1", num_dla_cores=2)  # 8.x: no explicit quantization on the DLA, FP16 is the DLA path
    with pytest.raises(MfssdError, match="runs no Q/DQ"):
        build_engine(BuildRequest(onnx=onnx_files, out=tmp_path / "g.engine", precision="int8", dla_core=0),
                     gpu=GPU_ORIN)  # fmt: skip
    build_engine(BuildRequest(onnx=onnx_files, out=tmp_path / "h.engine", precision="fp16", dla_core=0), gpu=GPU_ORIN)
    assert not list(tmp_path.glob("[efg].engine"))


def test_timing_cache_foreign_corrupt_merged_and_keyed(fake, onnx_files, tmp_path, caplog, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def build(name: str, **kw: Any) -> dict[str, Any]:
        return build_engine(BuildRequest(onnx=onnx_files, out=tmp_path / name, **kw), gpu=GPU_ORIN)

    cache = tmp_path / "timing.cache"
    other = make_fake_tensorrt("10.3.0", device="GTX1080Ti-sm61")  # a cache from another GPU
    cache.write_bytes(other.Builder(None).create_builder_config().create_timing_cache(b"").serialize())
    trt = fake("10.3.0")
    with caplog.at_level(logging.WARNING):
        build("a.engine", timing_cache=cache)
    assert "from another TensorRT version or GPU (or corrupt): starting an empty timing cache" in caplog.text
    assert [c[3] for c in trt.calls if c[0] == "config.set_timing_cache"] == [False, True]
    assert cache.read_bytes().startswith(b"TIMING|10.3.0|Orin-sm87|")  # replaced by this TensorRT's and GPU's
    assert cache.with_name("timing.cache.lock").exists()  # read and written under the lock
    caplog.clear()
    cache.write_bytes(b"OLD")  # unreadable: create_timing_cache returns None
    with caplog.at_level(logging.WARNING):
        build("b.engine", timing_cache=cache)
    assert "starting an empty timing cache" in caplog.text and cache.read_bytes().startswith(b"TIMING|10.3.0|")
    # another build wrote the cache meanwhile: merged (combine), not overwritten
    trt = fake("10.3.0")
    real_build = trt.Builder.build_serialized_network

    def concurrent(self, network, config):  # type: ignore[no-untyped-def]
        cache.write_bytes(b"TIMING|10.3.0|Orin-sm87|from-another-build")
        return real_build(self, network, config)

    monkeypatch.setattr(trt.Builder, "build_serialized_network", concurrent)
    build("c.engine", timing_cache=cache)
    assert b"from-another-build" in cache.read_bytes() and b"tactics-" in cache.read_bytes()
    assert ("cache.combine", b"10.3.0|Orin-sm87", False) in trt.calls
    # the default file is keyed by TensorRT version and GPU
    fake("10.3.0")
    meta = build("d.engine", timing_cache_dir=tmp_path / "engines")
    keyed = tmp_path / "engines" / "timing.trt10.3.0.orin.sm87.cache"
    assert keyed.is_file() and meta["timing_cache"] == str(keyed)
    named = timing_cache_path(tmp_path, "8.6.1", GPU_1080TI).name
    assert named == "timing.trt8.6.1.nvidia-geforce-gtx-1080-ti.sm61.cache"
    # no cache to save (getTimingCache returns None): a warning, the engine is still written
    trt = fake("10.3.0")
    caplog.clear()
    config_cls = type(trt.Builder(None).create_builder_config())
    monkeypatch.setattr(config_cls, "set_timing_cache", lambda self, cache, ignore_mismatch: False)
    with caplog.at_level(logging.WARNING):
        build("e.engine", timing_cache=tmp_path / "x.cache")
    assert "refused an empty timing cache" in caplog.text and "no timing cache to save" in caplog.text
    assert (tmp_path / "e.engine").is_file() and not (tmp_path / "x.cache").exists()


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
