"""Contract tests of the TensorRT backend without torch: buffers held with NVIDIA's CUDA bindings.

No GPU, TensorRT or CUDA here: `cuda.bindings.runtime` is the recording fake of tests/fake_cuda.py, whose
"device" memory is real host memory and whose async work runs only when its stream is synchronized; the
fake engine (tests/fake_tensorrt.py) runs the same ONNX model on ONNX Runtime through the device addresses
our backend binds, in stream order. So the results must equal ONNX Runtime's on the same ONNX exactly, and
a missing copy, synchronize or device switch shows up as wrong bytes or a loud error. This proves our
side of the calls, not CUDA's or TensorRT's.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from mfssd_deploy import Detector
from mfssd_deploy.errors import MfssdError, MissingExtraError
from mfssd_deploy.runtime.backends import tensorrt_backend, tensorrt_cuda
from mfssd_deploy.runtime.backends.tensorrt_lean import LeanTensorRTBackend

from fake_cuda import FakeCuda, FakeCudaError
from fake_tensorrt import add_fake_runtime, make_fake_tensorrt
from helpers import assert_thread_safe, make_engine, same

pytestmark = pytest.mark.contract
ORIN = ("Orin", (8, 7))
GTX1080TI = ("NVIDIA GeForce GTX 1080 Ti", (6, 1))


def install(monkeypatch: pytest.MonkeyPatch, onnx_path: Path, layout: str = "end2end", version: str = "10.3.0",
            cuda: FakeCuda | None = None) -> tuple[Any, FakeCuda]:  # fmt: skip
    """The fake CUDA bindings and a fake TensorRT whose engine runs `onnx_path` through them."""
    cuda = cuda or FakeCuda()
    for name, module in cuda.modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    trt = make_fake_tensorrt(version)
    add_fake_runtime(trt, str(onnx_path), layout, current_device=cuda.current_device,
                     device_capability=lambda i: cuda.devices[i][1], enqueue=cuda.enqueue,
                     check_memory=cuda.check_memory)  # fmt: skip
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt, cuda


def engine_of(tmp: Path, onnx_path: Path, **kw: Any) -> Path:
    """helpers.make_engine, with the engine precision an INT8 Q/DQ file builds (int8)."""
    engine = make_engine(tmp, onnx_path, **kw)
    sidecar = engine.with_name(engine.name + ".json")
    meta = json.loads(sidecar.read_text())
    meta["precision"] = {"int8-qdq": "int8"}.get(meta["precision"], meta["precision"])
    sidecar.write_text(json.dumps(meta))
    return engine


def images(artifacts: dict[str, Path]) -> list[np.ndarray]:
    return [cv2.imread(str(p)) for p in sorted(artifacts["imgs"].iterdir())]


@pytest.mark.parametrize("key", ["e2e", "int8"])
def test_outputs_equal_onnxruntime_on_the_same_onnx(artifacts, tmp_path, monkeypatch, key) -> None:  # type: ignore[no-untyped-def]
    trt, cuda = install(monkeypatch, artifacts[key])
    det = Detector(engine_of(tmp_path, artifacts[key]), device="cuda", buffers="cuda")
    backend = det.backend
    assert isinstance(backend, LeanTensorRTBackend) and backend.buffers == "cuda" and backend.name == "tensorrt"
    x = det.preprocess(images(artifacts))
    ref = ort.InferenceSession(str(artifacts[key]), providers=["CPUExecutionProvider"]).run(None, {"images": x})
    got = backend.infer(x)
    assert [o.dtype for o in got] == [np.int32, np.float32, np.float32, np.int32]
    for a, b in zip(got, ref, strict=True):
        assert np.array_equal(a, b)  # the same bytes: every copy went the whole way
    assert int(ref[0].sum()) > 0  # there were detections to lose
    paths = [str(p) for p in sorted(artifacts["imgs"].iterdir())]
    same(det(paths), Detector(artifacts[key])(paths), iou=0.9999, tol=1e-6)
    # one non-blocking stream; host -> device, the engine, device -> host on it, then the event waited on
    (stream,) = cuda.streams.values()
    assert stream.flags == 1 and ("context.execute_async_v3", stream.handle) in trt.calls
    order = [c[0] if c[0] != "cudaMemcpyAsync" else c[1] for c in cuda.calls if c[0] != "cudaSetDevice"]
    call = order[order.index("cudaMemcpyHostToDevice") :][:8]
    assert call == ["cudaMemcpyHostToDevice", "enqueue", "enqueue", *["cudaMemcpyDeviceToHost", "enqueue"] * 2,
                    "cudaMemcpyDeviceToHost"], call  # fmt: skip


def test_buffers_per_batch_size_pinned_and_freed(artifacts, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _, cuda = install(monkeypatch, artifacts["e2e"])
    backend = Detector(make_engine(tmp_path, artifacts["e2e"]), device="cuda", buffers="cuda").backend
    x = np.random.default_rng(0).normal(size=(3, 3, 300, 300)).astype(np.float32)
    first = backend.infer(x)
    assert len(cuda.live("device")) == len(cuda.live("pinned")) == 5  # images + 4 outputs, batch 3
    again = backend.infer(x)
    assert len(cuda.live("device")) == 5  # cached for the batch size
    backend.infer(x[:2])
    assert len(cuda.live("device")) == len(cuda.live("pinned")) == 10  # and a set for batch 2
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a, b)
    first[1][:] = -1  # the caller's arrays are copies, not views of the pinned buffers
    assert not np.array_equal(backend.infer(x)[1], first[1])
    backend.close()
    assert not cuda.live() and not any(s.live for s in cuda.streams.values())
    assert not any(e.live for e in cuda.events.values())
    with pytest.raises(MfssdError, match="was closed"):
        backend.infer(x)
    backend.close()  # twice: nothing left, no double free


def test_the_fake_catches_a_missing_synchronize_and_host_memory_bound_to_the_engine(artifacts, tmp_path,
                                                                                     monkeypatch) -> None:  # fmt: skip
    """The two ways the plumbing could be wrong on a GPU fail here too (a test that cannot fail is a defect)."""
    install(monkeypatch, artifacts["e2e"])
    backend = Detector(make_engine(tmp_path, artifacts["e2e"]), device="cuda", buffers="cuda").backend
    x = Detector(artifacts["e2e"]).preprocess(images(artifacts))
    good = backend.infer(x)
    monkeypatch.setattr(tensorrt_cuda.Stream, "wait", lambda self: None)  # no event synchronize
    stale = backend.infer(np.zeros_like(x))  # the last call's bytes are still in the pinned buffers
    assert all(np.array_equal(a, b) for a, b in zip(stale, good, strict=True))
    right = ort.InferenceSession(str(artifacts["e2e"]), providers=["CPUExecutionProvider"]).run(
        None, {"images": np.zeros_like(x)}
    )
    assert not all(np.array_equal(a, b) for a, b in zip(right, good, strict=True))  # so stale is wrong
    monkeypatch.undo()
    install(monkeypatch, artifacts["e2e"])
    backend = Detector(make_engine(tmp_path, artifacts["e2e"]), device="cuda", buffers="cuda").backend
    bufs, bind = backend._prepare(4), backend.context.set_tensor_address
    host = bufs.host["images"].ptr  # the engine given the pinned host copy of the input, not the device one
    monkeypatch.setattr(backend.context, "set_tensor_address", lambda n, p: bind(n, host if n == "images" else p))
    with pytest.raises(FakeCudaError, match="live pinned memory of device 0, not device memory of device 0"):
        backend.infer(x)


def test_cuda_n_runs_on_device_n_from_every_thread(artifacts, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cuda = FakeCuda(devices={0: GTX1080TI, 1: ORIN})  # the engine was built on the Orin, device 1
    trt, _ = install(monkeypatch, artifacts["e2e"], cuda=cuda)
    det = Detector(make_engine(tmp_path, artifacts["e2e"]), device="cuda:1", buffers="cuda")
    imgs = images(artifacts)
    same(det(imgs), Detector(artifacts["e2e"])(imgs), iou=0.9999, tol=1e-6)
    assert {a.device for a in cuda.live()} == {1} and all(c.engine.device == 1 for c in trt.contexts)
    assert cuda.current_device() == 0  # restored after every call
    seen: list[int] = []

    def other_thread() -> None:  # a fresh thread starts on device 0; the fake raises if we ran there
        seen.append(len(det(imgs[:2])))
        seen.append(cuda.current_device())

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    assert seen == [2, 0]
    assert_thread_safe(det, imgs * 2)
    with pytest.raises(MfssdError, match=r"built for Orin \(sm_87\) but this GPU is NVIDIA GeForce GTX 1080 Ti"):
        Detector(make_engine(tmp_path / "..", artifacts["e2e"]), device="cuda:0", buffers="cuda")
    with pytest.raises(MfssdError, match=r"cuda:2: this machine has 2 CUDA device\(s\)"):
        Detector(make_engine(tmp_path / "..", artifacts["e2e"]), device="cuda:2", buffers="cuda")


def test_dla_core_static_batch_and_no_cuda_graphs(artifacts, tmp_path, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    trt, _ = install(monkeypatch, artifacts["e2e"])
    engine = make_engine(tmp_path, artifacts["e2e"], batch=(4, 4))
    sidecar = tmp_path / f"{engine.name}.json"
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "plan": {"dla_core": 1}}))
    with caplog.at_level(logging.WARNING):
        det = Detector(engine, device="cuda", buffers="cuda", batch_size=4, cuda_graphs=True)
    assert "no CUDA graphs for an end2end engine" in caplog.text and det.backend.cuda_graphs is False
    imgs = images(artifacts)[:3]  # a batch of 3 on a batch-4 engine: padded, the padding dropped
    same(det(imgs), Detector(artifacts["e2e"])(imgs), iou=0.9999, tol=1e-6)
    names = [c[0] for c in trt.calls]
    assert ("runtime.DLA_core", 1) in trt.calls
    assert names.index("runtime.DLA_core") < names.index("runtime.deserialize_cuda_engine")
    assert trt.contexts[0].shapes["images"] == (4, 3, 300, 300)
    with pytest.raises(MfssdError, match=r"batch 5 is outside the engine's profile 4\.\.4"):
        det.backend.infer(np.zeros((5, 3, 300, 300), np.float32))


def test_buffer_choice(artifacts, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    install(monkeypatch, artifacts["raw"], layout="raw")
    raw = make_engine(tmp_path, artifacts["raw"])
    with pytest.raises(MfssdError, match=r"m\.engine is a raw engine: the CUDA-bindings buffers run end2end engines"):
        Detector(raw, device="cuda", buffers="cuda")
    with pytest.raises(MfssdError, match=r"buffers='fast' .*choose auto, torch .* or cuda"):
        Detector(raw, device="cuda", buffers="fast")
    monkeypatch.setattr(tensorrt_backend, "_torch_has_cuda", lambda: None)  # as if torch were not installed
    with pytest.raises(MissingExtraError, match=r"raw engine, whose decode \+ NMS run with torch on the GPU: build an "
                       r"end2end engine .* pip install \"mfssd-deploy\[torch\]\""):  # fmt: skip
        Detector(raw, device="cuda")
    monkeypatch.setattr(tensorrt_backend, "_torch_has_cuda", lambda: False)  # torch without CUDA (aarch64 PyPI)
    with pytest.raises(MfssdError, match=r"raw engine, .* and this torch has no CUDA: build an end2end engine"):
        Detector(raw, device="cuda")
    monkeypatch.setattr(tensorrt_backend, "_torch_has_cuda", lambda: None)
    install(monkeypatch, artifacts["e2e"])
    e2e = make_engine(tmp_path / "..", artifacts["e2e"])
    assert Detector(e2e, device="cuda").backend.buffers == "cuda"  # auto, torch missing
    monkeypatch.setattr(tensorrt_backend, "_torch_has_cuda", lambda: False)  # torch without CUDA (aarch64 PyPI)
    assert Detector(e2e, device="cuda").backend.buffers == "cuda"
    monkeypatch.setenv(tensorrt_backend.BUFFERS_ENV, "torch")  # asked for: the torch buffers, and their error
    with pytest.raises(MfssdError, match="no CUDA GPU is visible"):
        Detector(e2e, device="cuda")
    monkeypatch.setattr(tensorrt_backend, "_torch_has_cuda", lambda: True)
    monkeypatch.setenv(tensorrt_backend.BUFFERS_ENV, "cuda")  # asked for beside torch with CUDA
    assert Detector(e2e, device="cuda").backend.buffers == "cuda"
    with pytest.raises(MfssdError, match="TensorRT engines run on the GPU"):
        Detector(e2e, device="cpu", backend="tensorrt")


def test_one_line_errors_of_the_cuda_side(artifacts, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(tmp_path, artifacts["e2e"])
    for cuda, message in (
        (FakeCuda(driver=0), r"no CUDA GPU is visible \(no NVIDIA driver is loaded\)"),
        (
            FakeCuda(driver=12060, runtime=13000),
            r'cuda-bindings 13\.0\.0 .* newer than the NVIDIA driver \(CUDA 12\.6\): pip install "cuda-bindings==12\.',
        ),
        (FakeCuda(devices={}), r"no CUDA GPU is visible \(cudaErrorNoDevice\)"),
    ):
        install(monkeypatch, artifacts["e2e"], cuda=cuda)
        with pytest.raises(MfssdError, match=message) as err:
            Detector(engine, device="cuda", buffers="cuda")
        assert "\n" not in str(err.value)
    install(monkeypatch, artifacts["e2e"], version="10.13.0")
    with pytest.raises(MfssdError, match=r"built with TensorRT 10\.3\.0 but TensorRT 10\.13\.0 is installed"):
        Detector(engine, device="cuda", buffers="cuda")
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)  # not installed
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", None)
    with pytest.raises(MissingExtraError, match=r'pip install "mfssd-deploy\[trt-lean\]"'):
        Detector(engine, device="cuda", buffers="cuda")


def test_a_failing_cuda_call_is_one_line(artifacts, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _, cuda = install(monkeypatch, artifacts["e2e"])
    backend = Detector(make_engine(tmp_path, artifacts["e2e"]), device="cuda", buffers="cuda").backend
    real, made = cuda.module.cudaMalloc, []

    def third_fails(size: int) -> Any:
        made.append(size)
        return (cuda.module.cudaError_t.cudaErrorMemoryAllocation, 0) if len(made) == 3 else real(size)

    monkeypatch.setattr(cuda.module, "cudaMalloc", third_fails)
    with pytest.raises(MfssdError, match=r"CUDA cudaMalloc\(\d+\) failed: cudaErrorMemoryAllocation"):
        backend.infer(np.zeros((2, 3, 300, 300), np.float32))
    assert not cuda.live()  # nothing half-allocated is left behind
