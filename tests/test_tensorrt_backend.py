"""Contract tests of the TensorRT backend: our buffer, stream, profile and CUDA-graph handling.

No GPU and no TensorRT here: torch.cuda is faked (buffers live on the CPU), and the fake engine runs
the same ONNX model on ONNX Runtime, reading and writing the raw addresses our backend binds. So the
results must equal the ONNX Runtime backend's exactly. This proves our side, not TensorRT's.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import pytest
import torch

import mfssd_deploy.backends.tensorrt_backend as trt_backend
from mfssd_deploy import Detector
from mfssd_deploy.errors import MfssdError

from fake_tensorrt import add_fake_runtime, make_fake_tensorrt
from helpers import assert_thread_safe, make_engine, same

pytestmark = pytest.mark.contract


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


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    class Stream:
        cuda_stream = 1234

        def __init__(self, device: Any = None) -> None:
            pass

        def synchronize(self) -> None:
            pass

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Orin")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: (8, 7))
    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", FakeGraph)
    monkeypatch.setattr(trt_backend, "buffer_device", lambda device: torch.device("cpu"))
    FakeGraph.instances.clear()


def install(monkeypatch: pytest.MonkeyPatch, onnx_path: Path, layout: str, version: str = "10.3.0") -> Any:
    trt = make_fake_tensorrt(version)
    add_fake_runtime(trt, str(onnx_path), layout)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)

    def graph(g: FakeGraph, stream: Any = None) -> Any:
        @contextlib.contextmanager
        def cm() -> Any:
            trt.capture["graph"] = g
            try:
                yield
            finally:
                trt.capture["graph"] = None

        return cm()

    monkeypatch.setattr(torch.cuda, "graph", graph)
    return trt


@pytest.mark.parametrize(("key", "layout"), [("e2e", "end2end"), ("raw", "raw")])
def test_engine_results_equal_onnxruntime(fake_cuda, artifacts, tmp_path, monkeypatch, key, layout) -> None:  # type: ignore[no-untyped-def]
    trt = install(monkeypatch, artifacts[key], layout)
    engine = make_engine(tmp_path, artifacts[key])
    det = Detector(engine, device="cuda")
    assert det.backend.name == "tensorrt" and det.layout == layout
    paths = [str(p) for p in sorted(artifacts["imgs"].iterdir())]
    same(det(paths), Detector(artifacts[key])(paths), iou=0.9999, tol=1e-6)
    assert ("context.execute_async_v3", 1234) in trt.calls  # enqueued on our stream's handle
    assert ("runtime.deserialize_cuda_engine", b"ENGINE-10.3.0") in trt.calls


def test_cuda_graph_captured_once_per_batch_then_replayed(fake_cuda, artifacts, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    trt = install(monkeypatch, artifacts["e2e"], "end2end")
    det = Detector(make_engine(tmp_path, artifacts["e2e"]), device="cuda", cuda_graphs=True, batch_size=2)
    imgs = [cv2.imread(str(p)) for p in sorted(artifacts["imgs"].iterdir())]
    first = det(imgs)  # batches of 2, 2: one capture for batch size 2
    second = det(imgs[:3])  # batch 2 replayed, batch 1 captured
    assert len(FakeGraph.instances) == 2 and [g.replays for g in FakeGraph.instances] == [3, 1]
    same(first[:3], second, iou=0.9999, tol=1e-6)
    same(first, Detector(artifacts["e2e"])(imgs), iou=0.9999, tol=1e-6)
    assert trt.context.executions == 2 + 4  # the two warm-up runs before capture + four replays


def test_profile_and_compat_errors(fake_cuda, artifacts, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    install(monkeypatch, artifacts["e2e"], "end2end", version="8.6.1")
    engine = make_engine(tmp_path, artifacts["e2e"], version="8.6.1", batch=(1, 2))
    det = Detector(engine, device="cuda", batch_size=4)
    with pytest.raises(MfssdError, match=r"batch 4 is outside the engine's profile 1\.\.2"):
        det([np.zeros((50, 50, 3), np.uint8)] * 4)
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
    install(monkeypatch, artifacts["e2e"], "end2end")
    det = Detector(make_engine(tmp_path, artifacts["e2e"]), device="cuda")
    imgs = [cv2.imread(str(p)) for p in sorted(artifacts["imgs"].iterdir())] * 2
    assert_thread_safe(det, imgs)
