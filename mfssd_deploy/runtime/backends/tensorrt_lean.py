"""The TensorRT backend without torch: an end2end engine, its buffers held with NVIDIA's CUDA bindings.

For a Jetson (PyPI's aarch64 torch has no CUDA; NVIDIA's own wheel is tied to one JetPack) and for GPU serving
images without PyTorch. An end2end engine needs no torch: its decode + NMS are inside the engine and its
outputs are four small padded tensors, copied back and unpacked in numpy (padded.unpack_end2end). Raw
engines, whose decode + NMS run with torch on the GPU, stay on tensorrt_backend.py (open_tensorrt refuses
them here in one line).

Per call, on one non-blocking stream (tensorrt_cuda.py, the pattern of NVIDIA/TensorRT samples/python/
common_runtime.py): the batch into pinned host memory, cudaMemcpyAsync to the device, set_input_shape and
set_tensor_address, execute_async_v3, cudaMemcpyAsync of each output into pinned host memory, an event
recorded and waited on; the host outputs are copied out (the buffers belong to the next call). Buffers
are allocated once per batch size. One execution context, used by one thread at a time ("the expected
runtime concurrency model is that different threads operate on different execution contexts", TensorRT
Developer Guide, "Thread Safety"): the Detector serialises calls (thread_safe False), and each call makes
the engine's device current on its own thread (the runtime API's current device is per thread). No CUDA
graphs: an end2end engine's NMS output is data-dependent (tensorrt_engine.py), so cuda_graphs=True warns and
runs eagerly, as the torch buffers do.
Memory is freed by close() (and when the backend is garbage-collected).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mfssd_deploy.artifacts import INPUT
from mfssd_deploy.config import ModelConfig
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.runtime.backends import tensorrt_cuda as cu
from mfssd_deploy.runtime.backends import tensorrt_engine as te
from mfssd_deploy.runtime.engine_meta import check_engine_compat, import_tensorrt, read_engine_meta


@dataclass
class _Buffers:
    """One batch size's memory: a device array and a pinned host array per tensor."""

    device: dict[str, cu.DeviceArray] = field(default_factory=dict)
    host: dict[str, cu.PinnedArray] = field(default_factory=dict)

    def free(self) -> None:
        for dev in self.device.values():
            dev.free()
        for host in self.host.values():
            host.free()


class LeanTensorRTBackend:
    name = "tensorrt"
    buffers = "cuda"

    def __init__(self, path: str | os.PathLike[str], device: str = "cuda", cuda_graphs: bool = False,
                 meta: dict[str, Any] | None = None) -> None:  # fmt: skip
        p = Path(path)
        self.index = cu.parse_device(device)
        self.meta = meta if meta is not None else read_engine_meta(p)
        self.layout = str(self.meta["layout"])
        if self.layout != "end2end":
            raise MfssdError(f"{p.name} is a raw engine: the CUDA-bindings buffers run end2end engines only (raw "
                             "outputs are decoded with torch on the GPU): use buffers='torch'")  # fmt: skip
        cu.cuda_runtime()
        import_tensorrt()
        import tensorrt as trt

        gpu = cu.device_info(self.index)
        check_engine_compat(self.meta, p.name, str(trt.__version__), gpu.name, gpu.capability)
        self.gpu = gpu
        self.trt = trt
        self.device = device
        self.config = ModelConfig.from_dict(self.meta["config"])
        self.thread_safe = False  # one execution context: the Detector serialises infer calls
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.dla_core = te.dla_core(self.meta)
        self._buffers: dict[int, _Buffers] = {}
        self._stream: cu.Stream | None = None
        with cu.on_device(self.index):
            self.runtime, self.engine = te.deserialize(trt, p, self.meta, self.logger)
            self.context = self.engine.create_execution_context()
            self._stream = cu.Stream()
        self.outputs, dtypes = te.io_contract(trt, self.engine, self.layout, p)
        unknown = sorted({d for d in dtypes.values() if d not in te.NUMPY_DTYPES})
        if unknown:
            raise MfssdError(f"{p.name}: I/O of type {', '.join(unknown)} has no numpy type: use buffers='torch'")
        self.dtypes = {n: np.dtype(te.NUMPY_DTYPES[d]) for n, d in dtypes.items()}
        self.min_batch, self.max_batch = te.batch_range(self.meta)
        self.cuda_graphs = te.graphs_allowed(cuda_graphs, self.layout, p.name)

    @property
    def stream(self) -> cu.Stream:
        if self._stream is None:
            raise MfssdError("this TensorRT backend was closed: make a new Detector")
        return self._stream

    def _prepare(self, batch: int) -> _Buffers:
        """Device and pinned host memory for one batch size; the context's input shape decides the outputs'."""
        if batch in self._buffers:
            return self._buffers[batch]
        width, height = self.config.input_wh
        shape = (batch, 3, height, width)
        if not self.context.set_input_shape(INPUT, shape):
            raise MfssdError(f"TensorRT rejected input shape {shape}")
        shapes = {INPUT: shape, **te.output_shapes(self.context, self.outputs)}
        bufs = _Buffers()
        try:
            for name, s in shapes.items():
                bufs.device[name] = cu.DeviceArray(s, self.dtypes[name])
                bufs.host[name] = cu.PinnedArray(s, self.dtypes[name])
        except BaseException:
            bufs.free()
            raise
        self._buffers[batch] = bufs
        return bufs

    def infer(self, x: np.ndarray) -> list[np.ndarray]:
        x, n = te.pad_batch(x, self.min_batch, self.max_batch)
        stream = self.stream
        with cu.on_device(self.index):
            bufs = self._prepare(int(x.shape[0]))
            np.copyto(bufs.host[INPUT].array, x, casting="same_kind")  # float32, or the engine's FP16 input
            stream.upload(bufs.device[INPUT], bufs.host[INPUT])
            if not self.context.set_input_shape(INPUT, bufs.host[INPUT].shape):
                raise MfssdError(f"TensorRT rejected input shape {bufs.host[INPUT].shape}")
            for name, mem in bufs.device.items():
                self.context.set_tensor_address(name, mem.ptr)
            if not self.context.execute_async_v3(stream.handle):
                raise MfssdError("TensorRT execution failed (see the TensorRT log)")
            for name in self.outputs:
                stream.download(bufs.host[name], bufs.device[name])
            stream.wait()
            # copies: the pinned buffers are overwritten by the next call
            return [bufs.host[name].array[:n].copy() for name in self.outputs]

    def close(self) -> None:
        """Free the device and pinned memory, the stream and the event (the engine goes with the object)."""
        if self._stream is None:
            return
        stream, self._stream = self._stream, None
        with cu.on_device(self.index):
            for bufs in self._buffers.values():
                bufs.free()
            self._buffers.clear()
            stream.destroy()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown or a lost GPU: nothing left to report to
            self.close()
