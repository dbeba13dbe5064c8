"""TensorRT backend: a serialized engine run with the TensorRT 8.5-11 runtime API.

Two ways to hold the I/O buffers, chosen by `open_tensorrt` (the registry's entry; buffers="auto" | "torch" |
"cuda", or MFSSD_TRT_BUFFERS): torch CUDA tensors here, where torch with CUDA is installed (raw outputs stay
on the GPU and go straight into the torch decode + batched NMS), or NVIDIA's CUDA bindings (tensorrt_lean.py:
end2end engines without torch, the Jetson and serving-image path). The engine handling both share is
tensorrt_engine.py (DLA core, deserialization, I/O contract, profile, data-dependent shapes).

Here the buffers are torch CUDA tensors on a torch CUDA stream (data_ptr / stream.cuda_stream, no pycuda).
Inputs are copied from pinned host memory; buffers are cached per batch size. An execution context is not
thread-safe: the Detector serialises calls to `infer`. Checked before loading: TensorRT version and GPU
match the engine's metadata. Every rule below names its source (docs/tensorrt.md, "Running").

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
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mfssd_deploy.artifacts import INPUT
from mfssd_deploy.config import ModelConfig
from mfssd_deploy.errors import MfssdError, MissingExtraError, require_torch
from mfssd_deploy.runtime.backends import tensorrt_engine as te
from mfssd_deploy.runtime.engine_meta import check_engine_compat, import_tensorrt, read_engine_meta

log = te.log
TORCH_DTYPES = {"FLOAT": "float32", "HALF": "float16", "INT32": "int32", "INT64": "int64", "INT8": "int8",
                "BOOL": "bool", "BF16": "bfloat16"}  # fmt: skip
BUFFERS = ("auto", "torch", "cuda")
BUFFERS_ENV = "MFSSD_TRT_BUFFERS"  # the choice for commands that take no backend options (mfssd-detect, -serve)


def _torch_has_cuda() -> bool | None:
    """None: torch is not installed; else whether it sees a CUDA GPU (PyPI's aarch64 torch has no CUDA)."""
    try:
        import torch
    except ImportError:
        return None
    return bool(torch.cuda.is_available())


def choose_buffers(choice: str, layout: str, name: str) -> str:
    """'torch' or 'cuda' for an engine of `layout`: torch CUDA tensors where torch has CUDA, else NVIDIA's CUDA
    bindings for an end2end engine; a raw engine's decode + NMS need torch on the GPU."""
    if choice not in BUFFERS:
        raise MfssdError(f"buffers={choice!r} ({BUFFERS_ENV}?): choose auto, torch (torch CUDA tensors) or cuda "
                         "(NVIDIA's CUDA bindings, end2end engines, no torch)")  # fmt: skip
    if choice == "cuda" and layout == "raw":
        raise MfssdError(f"{name} is a raw engine: the CUDA-bindings buffers run end2end engines only (raw outputs "
                         "are decoded with torch on the GPU): use buffers='torch' or an end2end engine")  # fmt: skip
    if choice != "auto":
        return choice
    torch_cuda = _torch_has_cuda()
    if torch_cuda or layout == "raw":
        if torch_cuda is None:
            raise MissingExtraError(
                f"{name} is a raw engine, whose decode + NMS run with torch on the GPU: build an end2end engine "
                '(mfssd-export --trt --model NAME.end2end.onnx) or pip install "mfssd-deploy[torch]"'
            )
        if not torch_cuda:  # e.g. PyPI's aarch64 wheel on a Jetson: the GPU is there, torch cannot use it
            raise MfssdError(
                f"{name} is a raw engine, whose decode + NMS run with torch on the GPU, and this torch has no CUDA: "
                "build an end2end engine (mfssd-export --trt --model NAME.end2end.onnx) or install a CUDA torch"
            )
        return "torch"
    return "cuda"


def open_tensorrt(path: str | os.PathLike[str], device: str = "cuda", cuda_graphs: bool = False,
                  buffers: str | None = None) -> Any:  # fmt: skip
    """The TensorRT backend for an engine file, its buffers chosen by `choose_buffers` (buffers=None: the
    MFSSD_TRT_BUFFERS environment variable, else auto)."""
    p = Path(path)
    if not device.startswith("cuda"):
        raise MfssdError(f"{p.name}: TensorRT engines run on the GPU: use device='cuda' (got {device!r})")
    meta = read_engine_meta(p)
    kind = choose_buffers(buffers or os.environ.get(BUFFERS_ENV) or "auto", str(meta["layout"]), p.name)
    if kind == "cuda":
        from mfssd_deploy.runtime.backends.tensorrt_lean import LeanTensorRTBackend

        return LeanTensorRTBackend(p, device, cuda_graphs=cuda_graphs, meta=meta)
    return TensorRTBackend(p, device, cuda_graphs=cuda_graphs, meta=meta)


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
    buffers = "torch"

    def __init__(self, path: str | os.PathLike[str], device: str = "cuda", cuda_graphs: bool = False,
                 meta: dict[str, Any] | None = None) -> None:  # fmt: skip
        if not device.startswith("cuda"):
            raise MfssdError(f"{Path(path).name}: TensorRT engines run on the GPU: use device='cuda' (got {device!r})")
        torch = require_torch("the TensorRT backend (its buffers are torch CUDA tensors)")
        import_tensorrt()
        import tensorrt as trt

        if not torch.cuda.is_available():
            raise MfssdError("no CUDA GPU is visible: a TensorRT engine needs the GPU it was built for")
        p = Path(path)
        self.meta = meta if meta is not None else read_engine_meta(p)
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
        self.dla_core = te.dla_core(self.meta)
        with torch.cuda.device(self.index):
            self.runtime, self.engine = te.deserialize(trt, p, self.meta, self.logger)
            self.context = self.engine.create_execution_context()
            self.stream = torch.cuda.Stream(device=self.index)
        self.outputs, dtypes = te.io_contract(trt, self.engine, self.layout, p)
        self.inputs = [INPUT]
        self.dtypes = {n: getattr(torch, TORCH_DTYPES[d]) for n, d in dtypes.items()}
        self.min_batch, self.max_batch = te.batch_range(self.meta)
        self.cuda_graphs = te.graphs_allowed(cuda_graphs, self.layout, p.name)
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
        width, height = self.config.input_wh
        shape = (batch, 3, height, width)
        pinned = self.dev.type == "cuda"
        bufs = _Buffers(host=torch.empty(shape, dtype=torch.float32, pin_memory=pinned))
        bufs.tensors[INPUT] = torch.empty(shape, dtype=self.dtypes[INPUT], device=self.dev)
        if not self.context.set_input_shape(INPUT, shape):
            raise MfssdError(f"TensorRT rejected input shape {shape}")
        for name, out_shape in te.output_shapes(self.context, self.outputs).items():
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
        x, n = te.pad_batch(x, self.min_batch, self.max_batch)
        batch = int(x.shape[0])
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
