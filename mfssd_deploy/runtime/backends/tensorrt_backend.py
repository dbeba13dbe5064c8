"""TensorRT backend: a serialized engine run with the TensorRT 8.5-11 runtime API.

I/O buffers are torch CUDA tensors on a torch CUDA stream (data_ptr / stream.cuda_stream, no pycuda),
so raw outputs stay on the GPU and go straight into the torch decode + batched NMS. Inputs are
copied from pinned host memory; buffers are cached per batch size. An execution context is not
thread-safe: the Detector serialises calls to `infer`. Checked before loading: TensorRT version and
GPU match the engine's metadata. Every rule below names its source (docs/tensorrt.md, "Running").

- Device: the engine is deserialized, its contexts created and every call run inside
  `torch.cuda.device(N)` for `cuda:N`, the device whose name and compute capability were checked.
- CUDA graphs (`cuda_graphs=True`), raw layout only. An end2end engine holds the NMS layer, whose
  output is data-dependent ("SelectedIndices ... has shape [NumOutputBoxes, 3]", INMSLayer, NVIDIA/
  TensorRT release/10.3 include/NvInfer.h), and enqueueV3 may allocate "temporary storage whose size
  cannot be predicted ahead of enqueueV3()" (IExecutionContext::setTemporaryStorageAllocator,
  release/10.3 include/NvInferRuntime.h): it runs eagerly, with a warning. For the raw layout each
  batch size gets its own execution context, set up once and captured once (a graph replays the
  context state of its capture; trtexec keeps one context per stream, samples/common/
  sampleInference.cpp), captured in cudaStreamCaptureModeThreadLocal (sampleDevice.h, beginCapture)
  after one plain run; if enqueueV3 returns false under capture ("the enqueue call may return false
  if the current CUDA graph capture fails", sampleInference.cpp), the capture is dropped and the
  engine runs eagerly, as trtexec does.
- Raw outputs are cloned on our stream and handed to the caller's stream: `record_stream` keeps torch's
  caching allocator from reusing their memory while the caller's kernels still read it.
- DLA engines: `runtime.DLA_core` is set before deserializing (IRuntime::setDLACore, "The DLA core to
  execute the engine on", release/10.3 include/NvInferRuntime.h); their profile is static, and a
  smaller batch is padded up to it ("The runtime dimensions must be the same as the dimensions used
  for building", DLA Supported Layers and Restrictions).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mfssd_deploy.artifacts import INPUT, OUTPUTS
from mfssd_deploy.config import ModelConfig
from mfssd_deploy.errors import MfssdError, require_torch
from mfssd_deploy.runtime.engine_meta import check_engine_compat, import_tensorrt, read_engine_meta

log = logging.getLogger("mfssd_deploy")
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


@dataclass
class _Graph:
    context: Any  # this batch size's own execution context, never touched after the capture
    graph: Any


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
        index = torch.device(device).index
        self.index = int(torch.cuda.current_device() if index is None else index)
        check_engine_compat(self.meta, p.name, str(trt.__version__), torch.cuda.get_device_name(self.index),
                            tuple(torch.cuda.get_device_capability(self.index)))  # fmt: skip
        self.torch = torch
        self.trt = trt
        self.device = device
        self.dev = buffer_device(device)
        self.config = ModelConfig.from_dict(self.meta["config"])
        self.layout = str(self.meta["layout"])
        self.thread_safe = False  # execution contexts: the Detector serialises infer calls
        self.logger = trt.Logger(trt.Logger.WARNING)
        plan = self.meta.get("plan") or {}
        self.dla_core = plan.get("dla_core") if isinstance(plan, dict) else None
        with torch.cuda.device(self.index):
            self.runtime = trt.Runtime(self.logger)
            if self.dla_core is not None:
                self.runtime.DLA_core = int(self.dla_core)
            self.engine = self.runtime.deserialize_cuda_engine(p.read_bytes())
            if self.engine is None:
                raise MfssdError(
                    f"{p} could not be deserialized (corrupt, built by another TensorRT or for another GPU): rebuild it"
                )
            self.context = self.engine.create_execution_context()
            self.stream = torch.cuda.Stream(device=self.index)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = list(OUTPUTS[self.layout])
        if self.inputs != [INPUT] or sorted(set(names) - set(self.inputs)) != sorted(self.outputs):
            raise MfssdError(f"{p}: unexpected I/O tensors {names} for the {self.layout} layout")
        self.dtypes = {n: getattr(torch, TORCH_DTYPES[self.engine.get_tensor_dtype(n).name]) for n in names}
        profile = self.meta["profiles"][INPUT]
        self.min_batch, self.max_batch = int(profile["min"][0]), int(profile["max"][0])
        if cuda_graphs and self.layout != "raw":
            log.warning("%s: no CUDA graphs for an end2end engine (its NMS has data-dependent output sizes): running "
                        "eagerly; graphs are for the raw layout", p.name)  # fmt: skip
            cuda_graphs = False
        self.cuda_graphs = cuda_graphs
        self._buffers: dict[int, _Buffers] = {}
        self._graphs: dict[int, _Graph] = {}

    def _shape_context(self, ctx: Any, bufs: _Buffers) -> None:
        """Input shape and every tensor address of one batch size on `ctx`."""
        shape = tuple(bufs.tensors[INPUT].shape)
        if not ctx.set_input_shape(INPUT, shape):
            raise MfssdError(f"TensorRT rejected input shape {shape}")
        for name, t in bufs.tensors.items():
            ctx.set_tensor_address(name, t.data_ptr())

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
            if any(d < 0 for d in out_shape):  # -1: data-dependent (IExecutionContext::getTensorShape)
                raise MfssdError(f"output {name} has a data-dependent shape {out_shape}: not an mfssd engine layout")
            bufs.tensors[name] = torch.empty(out_shape, dtype=self.dtypes[name], device=self.dev)
        self._buffers[batch] = bufs
        return bufs

    def _execute(self, ctx: Any) -> None:
        if not ctx.execute_async_v3(self.stream.cuda_stream):
            raise MfssdError("TensorRT execution failed (see the TensorRT log)")

    def _capture(self, batch: int, bufs: _Buffers) -> _Graph | None:
        """One context for this batch size, one plain run, then the capture; None if it cannot be captured."""
        torch = self.torch
        ctx = self.engine.create_execution_context()
        self._shape_context(ctx, bufs)
        self._execute(ctx)  # TensorRT may allocate on its first enqueue: not inside the capture
        self.stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        captured = False
        try:
            with torch.cuda.graph(graph, stream=self.stream, capture_error_mode="thread_local"):
                captured = bool(ctx.execute_async_v3(self.stream.cuda_stream))
        except RuntimeError as exc:  # the capture was invalidated (cudaErrorStreamCaptureInvalidated)
            log.debug("CUDA graph capture failed: %s", exc)
            captured = False
        if not captured:
            log.warning("the engine has operations not permitted under CUDA graph capture: running eagerly "
                        "(as trtexec --useCudaGraph does)")  # fmt: skip
            self.cuda_graphs = False
            return None
        return _Graph(ctx, graph)

    def _enqueue(self, batch: int, bufs: _Buffers) -> None:
        if self.cuda_graphs:
            g = self._graphs.get(batch)
            if g is None:
                g = self._capture(batch, bufs)
                if g is not None:
                    self._graphs[batch] = g
            if g is not None:
                g.graph.replay()
                return
        self._shape_context(self.context, bufs)
        self._execute(self.context)

    def infer(self, x: np.ndarray) -> Any:
        n = int(x.shape[0])
        if not 1 <= n <= self.max_batch:
            raise MfssdError(
                f"batch {n} is outside the engine's profile {self.min_batch}..{self.max_batch}: "
                "use Detector(batch_size=...) within it or rebuild with mfssd-export --trt --batch-profile"
            )
        batch = max(n, self.min_batch)  # a static (DLA) profile: pad the batch up to it
        if batch != n:
            x = np.concatenate([x, np.zeros((batch - n, *x.shape[1:]), x.dtype)])
        torch = self.torch
        with torch.cuda.device(self.index):
            consumer = torch.cuda.current_stream(self.index)  # where the caller will use raw outputs
            bufs = self._prepare(batch)
            with torch.cuda.stream(self.stream):
                bufs.host.copy_(torch.from_numpy(x))
                bufs.tensors[INPUT].copy_(bufs.host, non_blocking=True)
                self._enqueue(batch, bufs)
                if self.layout == "raw":
                    # Clones on the device: the buffers are reused by the next call, the outputs are not.
                    outs = tuple(bufs.tensors[name][:n].clone() for name in self.outputs)
            self.stream.synchronize()
            if self.layout == "raw":
                for t in outs:
                    t.record_stream(consumer)  # allocated on our stream, used on the caller's
                return outs
            # copy=True: the buffers are reused by the next call, and .cpu() of a host tensor would alias them.
            return [bufs.tensors[name][:n].to("cpu", copy=True).numpy() for name in self.outputs]
