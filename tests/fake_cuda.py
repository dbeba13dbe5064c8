"""A recording fake of NVIDIA's `cuda.bindings.runtime`, for contract tests of OUR CUDA-bindings buffer code.

It implements the calls mfssd_deploy makes (the names of tools/cuda_bindings_stubs.py, with the real enum
values and the real return convention: a tuple whose first item is a cudaError_t), and it moves real bytes:
"device" memory is host memory at a real address, so the fake TensorRT engine (fake_tensorrt.add_fake_runtime
with enqueue= and check_memory=) runs the real ONNX model on ONNX Runtime through the addresses our backend
binds. It is as strict as CUDA where our code depends on it:

- the current device is per host thread (cudaSetDevice: "for the calling host thread"); memory, streams and
  events belong to the device current when they were made;
- async work is asynchronous: a cudaMemcpyAsync or an enqueued engine runs only when its stream is
  synchronized (cudaStreamSynchronize, or cudaEventSynchronize on an event recorded after it), in stream
  order, so a missing synchronize or a copy on another stream leaves stale bytes, as on a GPU;
- a copy must name the right kind (device <-> pinned host) and stay inside live allocations; work on a
  stream of another device than the current one fails (cudaErrorInvalidResourceHandle); freeing twice, or
  host memory with cudaFree, fails (cudaErrorInvalidValue); an engine bound to memory that is not live
  device memory of its device raises;
- no GPU or a driver older than the bindings' runtime: cudaGetDeviceCount fails as the real one does
  (cudaErrorNoDevice / cudaErrorInsufficientDriver; cudaDriverGetVersion reads 0 without a driver).
It proves our calls and their order, not CUDA.
"""

from __future__ import annotations

import ctypes
import enum
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ORIN = ("Orin", (8, 7))


class FakeCudaError(AssertionError):
    """What CUDA would do wrongly (read stale memory, crash) made loud."""


class cudaError_t(enum.IntEnum):  # the values of cuda.bindings.runtime.cudaError_t
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100
    cudaErrorInvalidDevice = 101
    cudaErrorInvalidResourceHandle = 400


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3
    cudaMemcpyDefault = 4


OK = cudaError_t.cudaSuccess


@dataclass
class Alloc:
    kind: str  # "device" | "pinned"
    device: int
    buffer: Any  # the ctypes array that owns the bytes
    nbytes: int
    live: bool = True


@dataclass
class FakeStream:
    handle: int
    device: int
    flags: int
    pending: list[Callable[[], None]] = field(default_factory=list)
    enqueued: int = 0
    completed: int = 0
    live: bool = True

    def __int__(self) -> int:
        return self.handle

    def run_until(self, mark: int) -> None:
        while self.completed < mark:
            op = self.pending.pop(0)
            op()
            self.completed += 1


@dataclass
class FakeEvent:
    handle: int
    device: int
    flags: int
    stream: FakeStream | None = None
    mark: int = 0
    live: bool = True

    def __int__(self) -> int:
        return self.handle


class FakeCuda:
    """State and calls of one fake CUDA runtime; `module` is what replaces cuda.bindings.runtime."""

    def __init__(self, devices: dict[int, tuple[str, tuple[int, int]]] | None = None, driver: int = 12060,
                 runtime: int = 12090, integrated: bool = True) -> None:  # fmt: skip
        self.devices = dict(devices if devices is not None else {0: ORIN})
        self.driver, self.runtime, self.integrated = driver, runtime, integrated
        self.calls: list[tuple[Any, ...]] = []
        self.allocs: dict[int, Alloc] = {}
        self.streams: dict[int, FakeStream] = {}
        self.events: dict[int, FakeEvent] = {}
        self._local = threading.local()
        self._next = 0x7000
        self._lock = threading.Lock()
        self.module = self._module()
        self.package = types.ModuleType("cuda.bindings")
        self.package.__path__ = []  # type: ignore[attr-defined]
        self.package.__version__ = f"{runtime // 1000}.{runtime % 1000 // 10}.0"  # type: ignore[attr-defined]
        self.package.runtime = self.module  # type: ignore[attr-defined]

    # ---- state the fake TensorRT and the tests read

    def current_device(self) -> int:
        return int(getattr(self._local, "device", 0))

    def live(self, kind: str | None = None) -> list[Alloc]:
        return [a for a in self.allocs.values() if a.live and (kind is None or a.kind == kind)]

    def check_memory(self, ptr: int, nbytes: int, device: int) -> None:
        """For the fake engine: [ptr, ptr + nbytes) must be live device memory of `device`."""
        a = self._find(ptr, nbytes)
        if a is None or a.kind != "device" or not a.live or a.device != device:
            what = (
                "no allocation"
                if a is None
                else f"{'live' if a.live else 'freed'} {a.kind} memory of device {a.device}"
            )
            raise FakeCudaError(f"engine bound to {ptr:#x} (+{nbytes}): {what}, not device memory of device {device}")

    def enqueue(self, handle: int, op: Callable[[], None], what: str = "kernel") -> None:
        """For the fake engine: `op` runs when stream `handle` is synchronized; the stream must be live and of
        the current device."""
        stream = self.streams.get(int(handle))
        if stream is None or not stream.live:
            raise FakeCudaError(f"{what} enqueued on {handle!r}, not a live stream (the default stream?)")
        if stream.device != self.current_device():
            raise FakeCudaError(f"{what} on a stream of device {stream.device} while device {self.current_device()} "
                                "is current")  # fmt: skip
        self.calls.append(("enqueue", what, stream.handle))
        stream.pending.append(op)
        stream.enqueued += 1

    # ---- helpers

    def _handle(self) -> int:
        with self._lock:
            self._next += 0x10
            return self._next

    def _find(self, ptr: int, nbytes: int) -> Alloc | None:
        for base, a in self.allocs.items():
            if base <= ptr and ptr + nbytes <= base + a.nbytes:
                return a
        return None

    def _alloc(self, kind: str, size: int) -> tuple[cudaError_t, int]:
        if int(size) <= 0:
            return cudaError_t.cudaErrorInvalidValue, 0
        buf = (ctypes.c_uint8 * int(size))()
        ptr = ctypes.addressof(buf)
        self.allocs[ptr] = Alloc(kind, self.current_device(), buf, int(size))
        return OK, ptr

    def _free(self, kind: str, ptr: Any) -> tuple[cudaError_t]:
        a = self.allocs.get(int(ptr))
        if a is None or a.kind != kind or not a.live:
            self.calls.append(("error", f"free of {int(ptr):#x}: not a live {kind} allocation"))
            return (cudaError_t.cudaErrorInvalidValue,)
        a.live = False
        return (OK,)

    def _module(self) -> types.ModuleType:
        rt = types.ModuleType("cuda.bindings.runtime")
        fake = self

        class cudaDeviceProp:
            def __init__(self, name: bytes = b"", cc: tuple[int, int] = (0, 0), integrated: int = 0) -> None:
                self.name, (self.major, self.minor), self.integrated = name, cc, integrated

        def record(name: str, *args: Any) -> None:
            fake.calls.append((name, *args))

        def cudaGetErrorName(err: Any) -> tuple[cudaError_t, bytes]:
            return OK, cudaError_t(int(err)).name.encode()

        def cudaDriverGetVersion() -> tuple[cudaError_t, int]:
            return OK, fake.driver

        def cudaRuntimeGetVersion() -> tuple[cudaError_t, int]:
            return OK, fake.runtime

        def cudaGetDeviceCount() -> tuple[cudaError_t, int]:
            if fake.driver == 0:
                return cudaError_t.cudaErrorInsufficientDriver, 0  # what the real one says without a driver
            if fake.driver // 1000 < fake.runtime // 1000:
                return cudaError_t.cudaErrorInsufficientDriver, 0
            if not fake.devices:
                return cudaError_t.cudaErrorNoDevice, 0
            return OK, len(fake.devices)

        def cudaGetDeviceProperties(device: int) -> tuple[cudaError_t, Any]:
            if device not in fake.devices:
                return cudaError_t.cudaErrorInvalidDevice, None
            name, cc = fake.devices[device]
            return OK, cudaDeviceProp(name.encode(), cc, int(fake.integrated))

        def cudaGetDevice() -> tuple[cudaError_t, int]:
            return OK, fake.current_device()

        def cudaSetDevice(device: int) -> tuple[cudaError_t]:
            record("cudaSetDevice", device)
            if device not in fake.devices:
                return (cudaError_t.cudaErrorInvalidDevice,)
            fake._local.device = int(device)
            return (OK,)

        def cudaMalloc(size: int) -> tuple[cudaError_t, int]:
            record("cudaMalloc", size)
            return fake._alloc("device", size)

        def cudaMallocHost(size: int) -> tuple[cudaError_t, int]:
            record("cudaMallocHost", size)
            return fake._alloc("pinned", size)

        def cudaFree(ptr: Any) -> tuple[cudaError_t]:
            record("cudaFree", int(ptr))
            return fake._free("device", ptr)

        def cudaFreeHost(ptr: Any) -> tuple[cudaError_t]:
            record("cudaFreeHost", int(ptr))
            return fake._free("pinned", ptr)

        def cudaStreamCreateWithFlags(flags: int) -> tuple[cudaError_t, FakeStream]:
            s = FakeStream(fake._handle(), fake.current_device(), int(flags))
            fake.streams[s.handle] = s
            record("cudaStreamCreateWithFlags", flags)
            return OK, s

        def cudaStreamSynchronize(stream: Any) -> tuple[cudaError_t]:
            s = fake.streams.get(int(stream))
            if s is None or not s.live:
                return (cudaError_t.cudaErrorInvalidResourceHandle,)
            s.run_until(s.enqueued)
            record("cudaStreamSynchronize", s.handle)
            return (OK,)

        def cudaStreamDestroy(stream: Any) -> tuple[cudaError_t]:
            s = fake.streams.get(int(stream))
            if s is None or not s.live:
                return (cudaError_t.cudaErrorInvalidResourceHandle,)
            s.run_until(s.enqueued)  # "work ... will complete" before its resources are released
            s.live = False
            record("cudaStreamDestroy", s.handle)
            return (OK,)

        def cudaEventCreateWithFlags(flags: int) -> tuple[cudaError_t, FakeEvent]:
            e = FakeEvent(fake._handle(), fake.current_device(), int(flags))
            fake.events[e.handle] = e
            record("cudaEventCreateWithFlags", flags)
            return OK, e

        def cudaEventRecord(event: Any, stream: Any) -> tuple[cudaError_t]:
            e, s = fake.events.get(int(event)), fake.streams.get(int(stream))
            if e is None or s is None or not e.live or not s.live or s.device != fake.current_device():
                return (cudaError_t.cudaErrorInvalidResourceHandle,)
            e.stream, e.mark = s, s.enqueued
            record("cudaEventRecord", e.handle, s.handle)
            return (OK,)

        def cudaEventSynchronize(event: Any) -> tuple[cudaError_t]:
            e = fake.events.get(int(event))
            if e is None or not e.live:
                return (cudaError_t.cudaErrorInvalidResourceHandle,)
            if e.stream is not None:
                e.stream.run_until(e.mark)
            record("cudaEventSynchronize", e.handle)
            return (OK,)

        def cudaEventDestroy(event: Any) -> tuple[cudaError_t]:
            e = fake.events.get(int(event))
            if e is None or not e.live:
                return (cudaError_t.cudaErrorInvalidResourceHandle,)
            e.live = False
            record("cudaEventDestroy", e.handle)
            return (OK,)

        def cudaMemcpyAsync(dst: Any, src: Any, count: int, kind: Any, stream: Any) -> tuple[cudaError_t]:
            dst, src, count = int(dst), int(src), int(count)
            directions = {cudaMemcpyKind.cudaMemcpyHostToDevice: ("device", "pinned"),
                          cudaMemcpyKind.cudaMemcpyDeviceToHost: ("pinned", "device")}  # fmt: skip
            want = directions.get(cudaMemcpyKind(int(kind)))
            if want is None:
                raise FakeCudaError(f"copy kind {kind!r}: mfssd copies host -> device and device -> host only")
            d, s_ = fake._find(dst, count), fake._find(src, count)
            for a, role, k in ((d, "destination", want[0]), (s_, "source", want[1])):
                if a is None or not a.live:
                    raise FakeCudaError(f"cudaMemcpyAsync {role} is not inside a live allocation (illegal address)")
                if a.kind != k:
                    raise FakeCudaError(f"cudaMemcpyAsync {cudaMemcpyKind(int(kind)).name}: the {role} is {a.kind} "
                                        f"memory, not {k}")  # fmt: skip
            record("cudaMemcpyAsync", cudaMemcpyKind(int(kind)).name, count, int(stream))
            fake.enqueue(int(stream), lambda: ctypes.memmove(dst, src, count), "cudaMemcpyAsync")
            return (OK,)

        names = dict(
            cudaError_t=cudaError_t, cudaMemcpyKind=cudaMemcpyKind, cudaDeviceProp=cudaDeviceProp,
            cudaStream_t=FakeStream, cudaEvent_t=FakeEvent, cudaStreamNonBlocking=1, cudaEventDisableTiming=2,
            cudaGetErrorName=cudaGetErrorName, cudaDriverGetVersion=cudaDriverGetVersion,
            cudaRuntimeGetVersion=cudaRuntimeGetVersion, cudaGetDeviceCount=cudaGetDeviceCount,
            cudaGetDeviceProperties=cudaGetDeviceProperties, cudaGetDevice=cudaGetDevice, cudaSetDevice=cudaSetDevice,
            cudaMalloc=cudaMalloc, cudaMallocHost=cudaMallocHost, cudaFree=cudaFree, cudaFreeHost=cudaFreeHost,
            cudaStreamCreateWithFlags=cudaStreamCreateWithFlags, cudaStreamSynchronize=cudaStreamSynchronize,
            cudaStreamDestroy=cudaStreamDestroy, cudaEventCreateWithFlags=cudaEventCreateWithFlags,
            cudaEventRecord=cudaEventRecord, cudaEventSynchronize=cudaEventSynchronize,
            cudaEventDestroy=cudaEventDestroy, cudaMemcpyAsync=cudaMemcpyAsync,
        )  # fmt: skip
        for name, obj in names.items():
            setattr(rt, name, obj)
        return rt

    def modules(self) -> dict[str, types.ModuleType]:
        """What to put in sys.modules so that `from cuda.bindings import runtime` finds the fake."""
        return {"cuda.bindings": self.package, "cuda.bindings.runtime": self.module}
