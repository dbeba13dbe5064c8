"""Contract tests of the TensorRT backend: our buffer, stream, device, profile and CUDA-graph handling.

No GPU and no TensorRT here: torch.cuda is faked (buffers live on the CPU; the current device and the
device table are faked state), and the fake engine runs the same ONNX model on ONNX Runtime, reading
and writing the raw addresses our backend binds. So the results must equal the ONNX Runtime backend's
exactly. The fake is as strict as TensorRT where our code depends on it (tests/fake_tensorrt.py):
engines deserialize only on the GPU they were built for, contexts and enqueues must be on that device,
data-dependent engines fail under capture, a graph replayed after its context changed raises. This
proves our side, not TensorRT's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import mfssd_deploy.runtime.backends.tensorrt_backend as trt_backend
from mfssd_deploy import Detector
from mfssd_deploy.errors import MfssdError

from fake_tensorrt import add_fake_runtime, make_fake_tensorrt
from helpers import assert_thread_safe, make_engine, same

pytestmark = pytest.mark.contract
ORIN = ("Orin", (8, 7))
GTX1080TI = ("NVIDIA GeForce GTX 1080 Ti", (6, 1))


class FakeGraph:
    instances: ClassVar[list[FakeGraph]] = []

    def __init__(self) -> None:
        self.ops: list[Any] = []
        self.replays = 0
        FakeGraph.instances.append(self)

    def replay(self) -> None:
        self.replays += 1
        for op in self.ops:
            op()


class FakeCuda:
    """The CUDA state torch would see: a device table, the current device, record_stream calls."""

    def __init__(self) -> None:
        self.devices: dict[int, tuple[str, tuple[int, int]]] = {0: ORIN}
        self.current = 0
        self.recorded: list[tuple[int, Any]] = []  # (id of tensor, stream)
        self.capture_modes: list[str] = []

    def device(self, index: int) -> Any:
        @contextlib.contextmanager
        def cm() -> Any:
            before, self.current = self.current, int(index)
            try:
                yield
            finally:
                self.current = before

        return cm()


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> FakeCuda:
    cuda = FakeCuda()

    class Stream:
        cuda_stream = 1234

        def __init__(self, device: Any = None) -> None:
            self.device = device

        def synchronize(self) -> None:
            pass

    def record_stream(t: torch.Tensor, stream: Any) -> None:
        cuda.recorded.append((id(t), stream))

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=None: cuda.devices[cuda.current if i is None else i][0])
    monkeypatch.setattr(torch.cuda, "get_device_capability",
                        lambda i=None: cuda.devices[cuda.current if i is None else i][1])  # fmt: skip
    monkeypatch.setattr(torch.cuda, "current_device", lambda: cuda.current)
    monkeypatch.setattr(torch.cuda, "device", cuda.device)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: ("consumer", device))
    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", FakeGraph)
    monkeypatch.setattr(torch.Tensor, "record_stream", record_stream)
    monkeypatch.setattr(trt_backend, "buffer_device", lambda device: torch.device("cpu"))
    FakeGraph.instances.clear()
    return cuda


def install(monkeypatch: pytest.MonkeyPatch, cuda: FakeCuda, onnx_path: Path, layout: str, version: str = "10.3.0",
            **kw: Any) -> Any:  # fmt: skip
    trt = make_fake_tensorrt(version)
    add_fake_runtime(trt, str(onnx_path), layout, current_device=lambda: cuda.current,
                     device_capability=lambda i: cuda.devices[i][1], **kw)  # fmt: skip
    monkeypatch.setitem(sys.modules, "tensorrt", trt)

    def graph(g: FakeGraph, pool: Any = None, stream: Any = None, capture_error_mode: str = "global") -> Any:
        """torch.cuda.graph: capture_end raises if the capture was invalidated."""

        @contextlib.contextmanager
        def cm() -> Any:
            cuda.capture_modes.append(capture_error_mode)
            trt.capture["graph"], trt.capture["invalidated"] = g, False
            try:
                yield
            finally:
                trt.capture["graph"] = None
            if trt.capture["invalidated"]:
                raise RuntimeError("CUDA error: operation failed due to a previous error during capture")

        return cm()

    monkeypatch.setattr(torch.cuda, "graph", graph)
    return trt


def images(artifacts: dict[str, Path]) -> list[np.ndarray]:
    return [cv2.imread(str(p)) for p in sorted(artifacts["imgs"].iterdir())]


@pytest.mark.parametrize(("key", "layout"), [("e2e", "end2end"), ("raw", "raw")])
def test_engine_results_equal_onnxruntime(fake_cuda, artifacts, tmp_path, monkeypatch, key, layout) -> None:  # type: ignore[no-untyped-def]
    trt = install(monkeypatch, fake_cuda, artifacts[key], layout)
    engine = make_engine(tmp_path, artifacts[key])
    det = Detector(engine, device="cuda")
    assert det.backend.name == "tensorrt" and det.layout == layout
    paths = [str(p) for p in sorted(artifacts["imgs"].iterdir())]
    same(det(paths), Detector(artifacts[key])(paths), iou=0.9999, tol=1e-6)
    assert ("context.execute_async_v3", 1234) in trt.calls  # enqueued on our stream's handle
    assert ("runtime.deserialize_cuda_engine", b"ENGINE-10.3.0") in trt.calls


def test_raw_outputs_are_recorded_on_the_callers_stream(fake_cuda, artifacts, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    install(monkeypatch, fake_cuda, artifacts["raw"], "raw")
    backend = Detector(make_engine(tmp_path, artifacts["raw"]), device="cuda").backend
    x = np.zeros((2, 3, 300, 300), np.float32)
    outs = backend.infer(x)
    # cloned on our stream, used on the caller's: the caching allocator must not reuse them early
    assert sorted(fake_cuda.recorded) == sorted((id(t), ("consumer", 0)) for t in outs)


def test_cuda_graphs_one_context_per_batch_size(fake_cuda, artifacts, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    trt = install(monkeypatch, fake_cuda, artifacts["raw"], "raw")
    det = Detector(make_engine(tmp_path, artifacts["raw"]), device="cuda", cuda_graphs=True, batch_size=2)
    imgs = images(artifacts)
    first = det(imgs)  # batches of 2, 2: one capture for batch size 2
    second = det(imgs[:3])  # batch 2 replayed, batch 1 captured
    third = det(imgs)  # batch 2 replayed again after batch 1 was captured: its context must be untouched
    assert len(FakeGraph.instances) == 2 and [g.replays for g in FakeGraph.instances] == [5, 1]
    assert len(trt.contexts) == 3  # the eager one + one per captured batch size
    assert fake_cuda.capture_modes == ["thread_local", "thread_local"]  # other threads' CUDA calls do not fail
    same(first[:3], second, iou=0.9999, tol=1e-6)
    same(first, third, iou=0.9999, tol=1e-6)
    same(first, Detector(artifacts["raw"])(imgs), iou=0.9999, tol=1e-6)
    assert sum(c.executions for c in trt.contexts) == 2 + 6  # one plain run before each capture + six replays


def test_end2end_engine_runs_without_cuda_graphs(fake_cuda, artifacts, tmp_path, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    trt = install(monkeypatch, fake_cuda, artifacts["e2e"], "end2end")
    with caplog.at_level(logging.WARNING):
        det = Detector(make_engine(tmp_path, artifacts["e2e"]), device="cuda", cuda_graphs=True, batch_size=2)
        imgs = images(artifacts)
        same(det(imgs), Detector(artifacts["e2e"])(imgs), iou=0.9999, tol=1e-6)  # a capture would fail here
    assert not FakeGraph.instances and ("capture.failed", "data-dependent layer") not in trt.calls
    assert "no CUDA graphs for an end2end engine" in caplog.text and det.backend.cuda_graphs is False


def test_a_failed_capture_runs_eagerly_like_trtexec(fake_cuda, artifacts, tmp_path, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    trt = install(monkeypatch, fake_cuda, artifacts["raw"], "raw", capture_fails=True)
    det = Detector(make_engine(tmp_path, artifacts["raw"]), device="cuda", cuda_graphs=True, batch_size=2)
    imgs = images(artifacts)
    with caplog.at_level(logging.WARNING):
        got = det(imgs)
    assert "not permitted under CUDA graph capture: running eagerly" in caplog.text
    assert ("capture.failed", "data-dependent layer") in trt.calls and det.backend.cuda_graphs is False
    assert all(g.replays == 0 for g in FakeGraph.instances)  # the failed capture is never replayed
    same(got, Detector(artifacts["raw"])(imgs), iou=0.9999, tol=1e-6)


def test_cuda_n_loads_and_runs_on_device_n(fake_cuda, artifacts, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    fake_cuda.devices = {0: GTX1080TI, 1: ORIN}  # the engine was built on the Orin, device 1
    trt = install(monkeypatch, fake_cuda, artifacts["raw"], "raw")
    det = Detector(make_engine(tmp_path, artifacts["raw"]), device="cuda:1")
    imgs = images(artifacts)
    same(det(imgs), Detector(artifacts["raw"])(imgs), iou=0.9999, tol=1e-6)  # the fake raises off device 1
    assert all(c.engine.device == 1 for c in trt.contexts) and fake_cuda.current == 0
    with pytest.raises(MfssdError, match=r"built for Orin \(sm_87\) but this GPU is NVIDIA GeForce GTX 1080 Ti"):
        Detector(make_engine(tmp_path / "..", artifacts["raw"]), device="cuda:0")


def test_dla_engine_sets_the_runtime_core_and_pads_its_static_batch(
    fake_cuda, artifacts, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    trt = install(monkeypatch, fake_cuda, artifacts["e2e"], "end2end")
    engine = make_engine(tmp_path, artifacts["e2e"], batch=(4, 4))  # DLA: min = opt = max
    sidecar = tmp_path / f"{engine.name}.json"
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "plan": {"dla_core": 1}}))
    det = Detector(engine, device="cuda", batch_size=4)
    imgs = images(artifacts)[:3]  # a batch of 3 on a batch-4 engine
    same(det(imgs), Detector(artifacts["e2e"])(imgs), iou=0.9999, tol=1e-6)
    names = [c[0] for c in trt.calls]
    assert ("runtime.DLA_core", 1) in trt.calls
    assert names.index("runtime.DLA_core") < names.index("runtime.deserialize_cuda_engine")
    assert trt.contexts[0].shapes["images"] == (4, 3, 300, 300)


def test_data_dependent_output_dimensions_are_refused(fake_cuda, artifacts, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The fake reports -1 for an output dimension that depends on data, as getTensorShape does."""
    raw = onnx.load(artifacts["raw"])
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 300, 300])
    loc = helper.make_tensor_value_info("loc", TensorProto.FLOAT, None)
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("NonZero", ["images"], ["nz"]),
        helper.make_node("Cast", ["nz"], ["nzf"], to=1),
        helper.make_node("Unsqueeze", ["nzf", "zero"], ["loc"]),
        helper.make_node("Identity", ["loc"], ["scores"]),
    ]
    inits = [onnx.numpy_helper.from_array(np.array([0], np.int64), "zero")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [loc, scores], inits),
                              opset_imports=[helper.make_opsetid("", 17)])  # fmt: skip
    model.metadata_props.extend(raw.metadata_props)
    path = tmp_path / "dd.onnx"
    onnx.save(model, path)
    install(monkeypatch, fake_cuda, path, "raw")
    det = Detector(make_engine(tmp_path, path), device="cuda")
    with pytest.raises(MfssdError, match=r"output loc has .*shape \(1, 4, -1\)"):
        det([np.zeros((50, 50, 3), np.uint8)])


def test_profile_and_compat_errors(fake_cuda, artifacts, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    install(monkeypatch, fake_cuda, artifacts["e2e"], "end2end", version="8.6.1")
    engine = make_engine(tmp_path, artifacts["e2e"], version="8.6.1", batch=(1, 2))
    with pytest.raises(MfssdError, match=r"batch_size=4: m.end2end.engine's batch profile allows at most 2"):
        Detector(engine, device="cuda", batch_size=4)  # refused when made, not at the first call
    backend = Detector(engine, device="cuda").backend
    with pytest.raises(MfssdError, match=r"batch 4 is outside the engine's profile 1\.\.2"):
        backend.infer(np.zeros((4, 3, 300, 300), np.float32))  # the backend itself still checks
    with pytest.raises(MfssdError, match="TensorRT engines run on the GPU"):
        Detector(engine, device="cpu", backend="tensorrt")
    other = make_engine(tmp_path / "..", artifacts["e2e"], version="10.3.0")
    with pytest.raises(MfssdError, match=r"built with TensorRT 10\.3\.0 but TensorRT 8\.6\.1 is installed"):
        Detector(other, device="cuda")
    bad = tmp_path / "bad.engine"
    bad.write_bytes(b"junk")
    (tmp_path / "bad.engine.json").write_text((tmp_path / f"{engine.name}.json").read_text())
    with pytest.raises(MfssdError, match="could not be deserialized"):
        Detector(bad, device="cuda")


def test_threads_share_one_context_safely(fake_cuda, artifacts, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    install(monkeypatch, fake_cuda, artifacts["e2e"], "end2end")
    det = Detector(make_engine(tmp_path, artifacts["e2e"]), device="cuda")
    imgs = images(artifacts) * 2
    assert_thread_safe(det, imgs)


def test_tiles_of_a_large_frame_fill_the_engines_batch_profile(fake_cuda, artifacts, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Tiled inference on an engine: batch_size defaults to the profile's largest batch, so a 1080p frame's 41
    crops (40 tiles of 300 at overlap 0.2 + the whole frame) take 3 engine calls at a 1..16 profile; the
    results equal ONNX Runtime's tiled results on the same ONNX; a batch_size beyond the profile is refused
    when the Detector is made."""
    from mfssd_deploy.geometry.tiling import tile_grid

    install(monkeypatch, fake_cuda, artifacts["e2e"], "end2end")
    engine = make_engine(tmp_path, artifacts["e2e"], batch=(1, 16))
    det = Detector(engine, device="cuda", tile=300)
    assert det.batch_size == 16
    calls: list[int] = []
    infer = det.backend.infer
    monkeypatch.setattr(det.backend, "infer", lambda x: (calls.append(int(x.shape[0])), infer(x))[1])
    rng = np.random.default_rng(0)
    frame = (rng.random((1080, 1920, 3)) * 60).astype(np.uint8)
    for i, (x, y) in enumerate([(100, 100), (290, 260), (1500, 900), (960, 540)]):  # two across tile borders
        cv2.circle(frame, (x, y), 18 + 4 * i, (0, 0, 255), -1)
    crops = len(tile_grid(1920, 1080, (300, 300), 0.2)) + 1
    assert crops == 41
    got = det.detect_arrays([frame])
    assert calls == [16, 16, 9]
    same(got, Detector(artifacts["e2e"], tile=300, batch_size=16).detect_arrays([frame]), iou=0.9999, tol=1e-6)
    with pytest.raises(MfssdError, match=r"batch profile allows at most 16 per call"):
        Detector(engine, device="cuda", batch_size=32)
