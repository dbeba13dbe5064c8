"""GPU memory, streams and devices through NVIDIA's CUDA Python bindings (`cuda-bindings`), without torch.

What the lean TensorRT backend (tensorrt_lean.py) holds its buffers in: device memory (cudaMalloc), pinned
host memory (cudaMallocHost) seen as numpy arrays, one stream, async copies and an event that says when a
call's copies are done. The pattern is TensorRT's own Python samples' (NVIDIA/TensorRT samples/python/
common_runtime.py, 10.x: `from cuda.bindings import runtime as cudart`, cudaMallocHost wrapped with
np.ctypeslib.as_array, cudaMemcpyAsync on one stream, then a synchronize). Rules, with their sources:

- Every call returns a tuple whose first item is a cudaError_t and the rest its outputs (the "Returns"
  section of each function in cuda.bindings.runtime; `cuda_call` in common_runtime.py unpacks the same way);
  a failure becomes one MfssdError naming the call and CUDA's error name.
- `cuda.bindings.runtime` links the CUDA runtime statically ("statically link against the CUDA Runtime
  library from CUDA Toolkit 13.0.2", cuda-bindings 13.0.3 release notes), so the bindings' major version
  must not exceed the driver's: cudaErrorInsufficientDriver is reported with both versions and the pin.
- The current device is per host thread ("Sets `device` as the current device for the calling host
  thread", cudaSetDevice; memory allocated after it "will be physically resident on `device`"):
  `on_device` sets it for the block and restores it, on every call from every thread.
- The stream is non-blocking ("the created stream should perform no implicit synchronization with stream
  0", cudaStreamNonBlocking, cudaStreamCreateWithFlags): TensorRT warns against enqueueV3 on the default
  stream ("Using default stream in enqueueV3() may lead to performance issues", its runtime log).
- The completion event is created with cudaEventDisableTiming ("best performance when used with
  cudaStreamWaitEvent() and cudaEventQuery()", cudaEventCreateWithFlags): a marker, not a timer.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from mfssd_deploy.errors import MfssdError, MissingExtraError

LEAN_EXTRA = "trt-lean"
INSTALL = f'pip install "mfssd-deploy[{LEAN_EXTRA}]"'


def cuda_runtime() -> ModuleType:
    """cuda.bindings.runtime, or a one-line error naming the extra that installs it."""
    try:
        from cuda.bindings import runtime
    except ImportError as exc:
        raise MissingExtraError(
            f"the TensorRT backend without torch needs NVIDIA's CUDA bindings (cuda-bindings): {INSTALL}"
        ) from exc
    return runtime


def _error_name(err: Any) -> str:
    from cuda.bindings import runtime as rt

    try:
        name = rt.cudaGetErrorName(err)[1]
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # the name lookup itself failed: say the number
        return str(getattr(err, "value", err))


def call(result: tuple[Any, ...], what: str) -> Any:
    """The outputs of one CUDA runtime call (None, one value, or a tuple), or an MfssdError naming it."""
    from cuda.bindings import runtime as rt

    err, values = result[0], result[1:]
    if int(err) != int(rt.cudaError_t.cudaSuccess):
        raise MfssdError(f"CUDA {what} failed: {_error_name(err)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _version(v: int) -> str:
    return f"{v // 1000}.{v % 1000 // 10}"


@dataclass(frozen=True)
class DeviceInfo:
    """What the engine check compares (name and compute capability, as torch.cuda reports them: both read
    cudaDeviceProp) and what a mismatch message names."""

    index: int
    name: str
    capability: tuple[int, int]
    integrated: bool  # a Jetson: CPU and GPU share one DRAM


def device_info(index: int = 0) -> DeviceInfo:
    """Name and compute capability of CUDA device `index`, or one line saying why there is none."""
    cuda_runtime()
    from cuda.bindings import runtime as rt

    result = rt.cudaGetDeviceCount()
    if int(result[0]) != int(rt.cudaError_t.cudaSuccess):
        driver = rt.cudaDriverGetVersion()
        drv = int(driver[1]) if int(driver[0]) == int(rt.cudaError_t.cudaSuccess) else 0
        if drv == 0:
            raise MfssdError("no CUDA GPU is visible (no NVIDIA driver is loaded): a TensorRT engine needs its GPU")
        name = _error_name(result[0])
        if name == "cudaErrorInsufficientDriver":
            bindings = _bindings_version()
            raise MfssdError(
                f"cuda-bindings {bindings} (CUDA runtime {_version(int(rt.cudaRuntimeGetVersion()[1]))}) is newer than "
                f'the NVIDIA driver (CUDA {_version(drv)}): pip install "cuda-bindings=={drv // 1000}.*" '
                "(JetPack 6: 12.x, JetPack 7: 13.x)"
            )
        raise MfssdError(f"no CUDA GPU is visible ({name}): a TensorRT engine needs the GPU it was built for")
    count = int(result[1])
    if count == 0:
        raise MfssdError("no CUDA GPU is visible: a TensorRT engine needs the GPU it was built for")
    if not 0 <= index < count:
        raise MfssdError(f"device cuda:{index}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    prop = call(rt.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
    raw = prop.name
    name = (raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)).split("\x00")[0]
    return DeviceInfo(index, name, (int(prop.major), int(prop.minor)), bool(prop.integrated))


def _bindings_version() -> str:
    try:
        from cuda.bindings import __version__

        return str(__version__)
    except ImportError:
        return "?"


def parse_device(device: str) -> int:
    """'cuda' -> 0, 'cuda:N' -> N (torch's spelling, without torch)."""
    head, _, tail = device.partition(":")
    if head != "cuda" or (tail and not tail.isdigit()):
        raise MfssdError(f"device {device!r}: TensorRT engines run on the GPU: use 'cuda' or 'cuda:N'")
    return int(tail) if tail else 0


@contextlib.contextmanager
def on_device(index: int) -> Iterator[None]:
    """Device `index` current on this thread for the block, the previous one restored after."""
    from cuda.bindings import runtime as rt

    before = int(call(rt.cudaGetDevice(), "cudaGetDevice"))
    if before != index:
        call(rt.cudaSetDevice(index), f"cudaSetDevice({index})")
    try:
        yield
    finally:
        if before != index:
            call(rt.cudaSetDevice(before), f"cudaSetDevice({before})")


def _nbytes(shape: tuple[int, ...], dtype: np.dtype[Any]) -> int:
    return int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


class DeviceArray:
    """Device memory (cudaMalloc) for an array of `shape` and `dtype`."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        from cuda.bindings import runtime as rt

        self.shape, self.dtype = shape, np.dtype(dtype)
        self.nbytes = _nbytes(shape, self.dtype)
        self.ptr: int | None = int(call(rt.cudaMalloc(max(1, self.nbytes)), f"cudaMalloc({self.nbytes})"))

    def free(self) -> None:
        from cuda.bindings import runtime as rt

        if self.ptr is not None:
            ptr, self.ptr = self.ptr, None
            call(rt.cudaFree(ptr), "cudaFree")


class PinnedArray:
    """A numpy array in page-locked host memory (cudaMallocHost): with pageable memory an async copy "might be
    synchronous with respect to host" (CUDA Runtime API, "API synchronization behavior", Memcpy)."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        from cuda.bindings import runtime as rt

        self.shape, self.dtype = shape, np.dtype(dtype)
        self.nbytes = _nbytes(shape, self.dtype)
        self.ptr: int | None = int(call(rt.cudaMallocHost(max(1, self.nbytes)), f"cudaMallocHost({self.nbytes})"))
        raw = (ctypes.c_uint8 * max(1, self.nbytes)).from_address(self.ptr)
        self.array: np.ndarray = np.ctypeslib.as_array(raw)[: self.nbytes].view(self.dtype).reshape(shape)

    def free(self) -> None:
        from cuda.bindings import runtime as rt

        if self.ptr is not None:
            ptr, self.ptr = self.ptr, None
            self.array = np.empty(0, self.dtype)  # no view of ours outlives the memory
            call(rt.cudaFreeHost(ptr), "cudaFreeHost")


class Stream:
    """One non-blocking CUDA stream and one completion event on it."""

    def __init__(self) -> None:
        from cuda.bindings import runtime as rt

        self.stream: Any = call(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking), "cudaStreamCreateWithFlags")
        self.event: Any = call(rt.cudaEventCreateWithFlags(rt.cudaEventDisableTiming), "cudaEventCreateWithFlags")

    @property
    def handle(self) -> int:
        """The cudaStream_t as the integer TensorRT's execute_async_v3(stream_handle) takes."""
        return int(self.stream)

    def upload(self, dst: DeviceArray, src: PinnedArray) -> None:
        from cuda.bindings import runtime as rt

        self._copy(dst.ptr, src.ptr, src.nbytes, dst.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice)

    def download(self, dst: PinnedArray, src: DeviceArray) -> None:
        from cuda.bindings import runtime as rt

        self._copy(dst.ptr, src.ptr, src.nbytes, dst.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost)

    def _copy(self, dst: int | None, src: int | None, nbytes: int, room: int, kind: Any) -> None:
        from cuda.bindings import runtime as rt

        if dst is None or src is None or nbytes != room:
            raise MfssdError(f"internal error: a copy of {nbytes} bytes into {room} bytes (or freed memory)")
        call(rt.cudaMemcpyAsync(dst, src, nbytes, kind, self.stream), "cudaMemcpyAsync")

    def wait(self) -> None:
        """Block until everything enqueued so far on this stream has run (event recorded, then waited on)."""
        from cuda.bindings import runtime as rt

        call(rt.cudaEventRecord(self.event, self.stream), "cudaEventRecord")
        call(rt.cudaEventSynchronize(self.event), "cudaEventSynchronize")

    def destroy(self) -> None:
        from cuda.bindings import runtime as rt

        if self.stream is not None:
            stream, event, self.stream, self.event = self.stream, self.event, None, None
            call(rt.cudaEventDestroy(event), "cudaEventDestroy")
            call(rt.cudaStreamDestroy(stream), "cudaStreamDestroy")
