"""Contract tests: the benchmark's TensorRT engines per GPU and TensorRT line, against a recording fake
`tensorrt` (no GPU here). They prove which engines we build, from which ONNX, under which name, and
what we leave out; not TensorRT's behaviour."""

from __future__ import annotations

import logging
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from mfssd_deploy.bench.engines import EngineTarget, build_group_engines, engine_tag
from mfssd_deploy.errors import MissingExtraError
from mfssd_deploy.runtime.engine_meta import read_engine_meta

from fake_tensorrt import make_fake_tensorrt

pytestmark = pytest.mark.contract
GPU_ORIN = ("Orin", (8, 7))
GPU_1080TI = ("NVIDIA GeForce GTX 1080 Ti", (6, 1))
BOTH = ("trt-int8-e2e", "trt-fp16-e2e")


def target(version: str, gpu: tuple[str, tuple[int, int]], formats: tuple[str, ...] = BOTH) -> EngineTarget:
    return EngineTarget(gpu, version, (1, 8, 8), formats)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    def install(version: str, **kw: bool) -> Any:
        trt = make_fake_tensorrt(version, **kw)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        return trt

    return install


def onnx_of(artifacts: dict[str, Path]) -> dict[str, Path]:
    return {"fp32": artifacts["e2e"], "int8": artifacts["int8"]}


def parsed(trt: Any) -> list[int]:
    return [c[1] for c in trt.calls if c[0] == "parser.parse"]


def test_engine_tag_names_the_gpu_tensorrt_and_profile() -> None:
    assert engine_tag(target("8.6.1", GPU_1080TI)) == "nvidia-geforce-gtx-1080-ti-sm61-trt8.6.1-b1-8-8"


def test_pascal_gets_an_int8_engine_and_no_fp16_one(fake, artifacts, tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    trt = fake("8.6.1")
    fp16_exports: list[int] = []

    def export_fp16() -> Path:
        fp16_exports.append(1)
        return Path(artifacts["fp16"])

    with caplog.at_level(logging.WARNING):
        out = build_group_engines(onnx_of(artifacts), tmp_path, "full-abc", target("8.6.1", GPU_1080TI), export_fp16)
    assert list(out) == ["trt-int8-e2e"]
    assert out["trt-int8-e2e"].name == "full-abc.nvidia-geforce-gtx-1080-ti-sm61-trt8.6.1-b1-8-8.end2end.int8.engine"
    meta = read_engine_meta(out["trt-int8-e2e"])
    assert meta["precision"] == "int8" and meta["gpu_name"] == GPU_1080TI[0] and meta["tensorrt_version"] == "8.6.1"
    assert meta["profiles"]["images"]["max"] == [8, 3, 300, 300]
    assert parsed(trt) == [artifacts["int8"].stat().st_size]  # the Q/DQ ONNX, once
    assert "no trt-fp16-e2e rows for full-abc" in caplog.text and "1/64" in caplog.text and not fp16_exports
    # built once: a second run reuses the file
    again = build_group_engines(onnx_of(artifacts), tmp_path, "full-abc", target("8.6.1", GPU_1080TI), export_fp16)
    assert again == out and parsed(trt) == [artifacts["int8"].stat().st_size]


def test_another_gpu_or_tensorrt_builds_its_own_engine(fake, artifacts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    fake("10.3.0")
    a = build_group_engines(onnx_of(artifacts), tmp_path, "k", target("10.3.0", GPU_ORIN), lambda: artifacts["fp16"])
    fake("8.6.1")
    b = build_group_engines(onnx_of(artifacts), tmp_path, "k", target("8.6.1", GPU_ORIN), lambda: artifacts["fp16"])
    assert set(a) == set(b) == set(BOTH) and not set(a.values()) & set(b.values())
    assert read_engine_meta(b["trt-fp16-e2e"])["tensorrt_version"] == "8.6.1"


def test_tensorrt_11_builds_fp16_from_an_fp16_export(fake, artifacts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    trt = fake("11.0.0")
    out = build_group_engines(onnx_of(artifacts), tmp_path, "k", target("11.0.0", GPU_ORIN), lambda: artifacts["fp16"])
    assert set(out) == set(BOTH)
    assert sorted(parsed(trt)) == sorted([artifacts["int8"].stat().st_size, artifacts["fp16"].stat().st_size])


def test_a_failed_build_leaves_its_rows_out_and_writes_nothing(fake, artifacts, tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    fake("10.3.0", build_ok=False)
    with caplog.at_level(logging.WARNING):
        out = build_group_engines(onnx_of(artifacts), tmp_path, "k", target("10.3.0", GPU_ORIN, ("trt-int8-e2e",)),
                                  lambda: artifacts["fp16"])  # fmt: skip
    assert out == {} and "no trt-int8-e2e rows for k" in caplog.text and not list(tmp_path.glob("*.engine"))


def test_engine_formats_run_on_the_gpu_and_u8_on_the_cpu_only() -> None:
    from mfssd_deploy.bench.run import artifact_specs
    from mfssd_deploy.bench.suite import ALL_FORMATS, RANDOM, Model

    files = {"fp32-e2e": Path("a.onnx"), "int8u8-e2e": Path("b.onnx"), "trt-int8-e2e": Path("c.engine")}
    specs = artifact_specs([Model("full", files, RANDOM)], list(ALL_FORMATS), ["cpu", "cuda"], 8, 0, False)
    assert {(s["format"], s["device"]) for s in specs} == {
        ("fp32-e2e", "cpu"), ("fp32-e2e", "cuda"), ("int8u8-e2e", "cpu"), ("trt-int8-e2e", "cuda")}  # fmt: skip


def test_engines_are_built_only_on_a_gpu_with_tensorrt(fake, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from mfssd_deploy.bench.run import engine_target as _engine_target
    from mfssd_deploy.cli.bench import bench_request, build_parser
    from mfssd_deploy.exporters import tensorrt_build

    def args(*extra: str) -> Any:
        return bench_request(build_parser().parse_args(["--fps", *extra]))

    assert _engine_target(["cpu"], args()) is None
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))  # type stubs only
    assert _engine_target(["cpu", "cuda"], args()) is None
    fake("10.3.0")
    monkeypatch.setattr(tensorrt_build, "gpu_info", lambda: GPU_ORIN)
    assert _engine_target(["cpu", "cuda"], args("--batch-sizes", "1,4,16")) == EngineTarget(
        GPU_ORIN, "10.3.0", (1, 16, 16), BOTH
    )
    assert _engine_target(["cpu", "cuda"], args("--formats", "fp32-e2e,trt-int8-e2e")).formats == ("trt-int8-e2e",)
    assert _engine_target(["cpu", "cuda"], args("--no-engines")) is None
    assert _engine_target(["cpu", "cuda"], args("--formats", "fp32-e2e")) is None

    def no_torch() -> Any:
        raise MissingExtraError("building engines needs torch to identify the GPU")

    monkeypatch.setattr(tensorrt_build, "gpu_info", no_torch)  # a lean install: ONNX Runtime GPU rows only
    assert _engine_target(["cpu", "cuda"], args()) is None
