"""TensorRT backend: a serialized engine run with the TensorRT 8.5-11 runtime API.

I/O buffers are torch CUDA tensors on a torch CUDA stream (data_ptr / stream.cuda_stream, no pycuda),
so raw outputs stay on the GPU and go straight into the torch decode + batched NMS. Inputs are
copied from pinned host memory; buffers are cached per batch size; with `cuda_graphs=True` the
enqueue of each batch size is captured once and replayed. An execution context is not thread-safe:
the Detector serialises calls to `infer`. Checked before loading: TensorRT version and GPU match the
engine's metadata.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mfssd_deploy.artifacts import INPUT, OUTPUTS
from mfssd_deploy.config import ModelConfig
from mfssd_deploy.engine_meta import check_engine_compat, import_tensorrt, read_engine_meta
from mfssd_deploy.errors import MfssdError, require_torch

TORCH_DTYPES = {"FLOAT": "float32", "HALF": "float16", "INT32": "int32", "INT64": "int64", "INT8": "int8",
                "BOOL": "bool", "BF16": "bfloat16"}  # fmt: skip


def buffer_device(device: str) -> Any:
    """Where I/O buffers live (the GPU). Contract tests redirect this to the CPU."""
    import torch

    return torch.device(device)


@dataclass
class _Buffers:
    host: Any  # pinned host tensor for the input
    tensors: dict[str, Any] = field(default_factory=dict)  # name -> device tensor (input and outputs)


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, path: str | os.PathLike[str], device: str = "cuda", cuda_graphs: bool = False) -> None:
        if not device.startswith("cuda"):
            raise MfssdError(f"{Path(path).name}: TensorRT engines run on the GPU: use device='cuda' (got {device!r})")
        torch = require_torch("the TensorRT backend (its buffers are torch CUDA tensors)")
        import_tensorrt()
        import tensorrt as trt

        if not torch.cuda.is_available():
            raise MfssdError("no CUDA GPU is visible: a TensorRT engine needs the GPU it was built for")
        p = Path(path)
        self.meta = read_engine_meta(p)
        index = torch.device(device).index or 0
        check_engine_compat(self.meta, p.name, str(trt.__version__), torch.cuda.get_device_name(index),
                            tuple(torch.cuda.get_device_capability(index)))  # fmt: skip
        self.torch = torch
        self.trt = trt
        self.device = device
        self.dev = buffer_device(device)
        self.config = ModelConfig.from_dict(self.meta["config"])
        self.layout = str(self.meta["layout"])
        self.thread_safe = False  # one execution context: the Detector serialises infer calls
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(p.read_bytes())
        if self.engine is None:
            raise MfssdError(f"{p} could not be deserialized (corrupt, or built by another TensorRT): rebuild it")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = list(OUTPUTS[self.layout])
        if self.inputs != [INPUT] or sorted(set(names) - set(self.inputs)) != sorted(self.outputs):
            raise MfssdError(f"{p}: unexpected I/O tensors {names} for the {self.layout} layout")
        self.dtypes = {n: getattr(torch, TORCH_DTYPES[self.engine.get_tensor_dtype(n).name]) for n in names}
        profile = self.meta["profiles"][INPUT]
        self.min_batch, self.max_batch = int(profile["min"][0]), int(profile["max"][0])
        self.stream = torch.cuda.Stream(device=self.dev)
        self.cuda_graphs = cuda_graphs
        self._buffers: dict[int, _Buffers] = {}
        self._graphs: dict[int, Any] = {}

    def _prepare(self, batch: int) -> _Buffers:
        """Buffers for one batch size; the context's input shape decides the output shapes."""
        if batch in self._buffers:
            return self._buffers[batch]
        torch = self.torch
        size = self.config.input_size
        shape = (batch, 3, size, size)
        pinned = self.dev.type == "cuda"
        bufs = _Buffers(host=torch.empty(shape, dtype=torch.float32, pin_memory=pinned))
        bufs.tensors[INPUT] = torch.empty(shape, dtype=self.dtypes[INPUT], device=self.dev)
        if not self.context.set_input_shape(INPUT, shape):
            raise MfssdError(f"TensorRT rejected input shape {shape}")
        for name in self.outputs:
            dims = self.context.get_tensor_shape(name)
            out_shape = tuple(int(dims[i]) for i in range(len(dims)))
            if any(d < 0 for d in out_shape):
                raise MfssdError(f"output {name} has an unresolved shape {out_shape}")
            bufs.tensors[name] = torch.empty(out_shape, dtype=self.dtypes[name], device=self.dev)
        self._buffers[batch] = bufs
        return bufs

    def _enqueue(self, batch: int, bufs: _Buffers) -> None:
        ctx = self.context
        ctx.set_input_shape(INPUT, tuple(bufs.tensors[INPUT].shape))
        for name, t in bufs.tensors.items():
            ctx.set_tensor_address(name, t.data_ptr())
        if not self.cuda_graphs:
            if not ctx.execute_async_v3(self.stream.cuda_stream):
                raise MfssdError("TensorRT execution failed (see the TensorRT log)")
            return
        graph = self._graphs.get(batch)
        if graph is None:
            # One plain run first (TensorRT may allocate on its first enqueue), then capture.
            if not ctx.execute_async_v3(self.stream.cuda_stream):
                raise MfssdError("TensorRT execution failed (see the TensorRT log)")
            graph = self.torch.cuda.CUDAGraph()
            with self.torch.cuda.graph(graph, stream=self.stream):
                ctx.execute_async_v3(self.stream.cuda_stream)
            self._graphs[batch] = graph
        graph.replay()

    def infer(self, x: np.ndarray) -> Any:
        batch = int(x.shape[0])
        if not self.min_batch <= batch <= self.max_batch:
            raise MfssdError(
                f"batch {batch} is outside the engine's profile {self.min_batch}..{self.max_batch}: "
                "use Detector(batch_size=...) within it or rebuild with mfssd-export --trt --batch"
            )
        torch = self.torch
        bufs = self._prepare(batch)
        with torch.cuda.stream(self.stream):
            bufs.host.copy_(torch.from_numpy(x))
            bufs.tensors[INPUT].copy_(bufs.host, non_blocking=True)
            self._enqueue(batch, bufs)
            if self.layout == "raw":
                # Clones on the device: the buffers are reused by the next call, the outputs are not.
                outs = tuple(bufs.tensors[n].clone() for n in self.outputs)
        self.stream.synchronize()
        if self.layout == "raw":
            return outs
        # copy=True: the buffers are reused by the next call, and .cpu() of a host tensor would alias them.
        return [bufs.tensors[n].to("cpu", copy=True).numpy() for n in self.outputs]
