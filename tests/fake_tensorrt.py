"""A recording fake of the `tensorrt` module, for contract tests of OUR TensorRT logic.

It implements only the API surface mfssd_deploy uses, shaped per TensorRT line: 11.x has no
BuilderFlag.FP16/INT8 (removed there), so code that sets them on 11.x fails here as it would there.
It proves which calls we make per version, not what TensorRT does with them.
"""

from __future__ import annotations

import types
from typing import Any


def make_fake_tensorrt(version: str, parse_ok: bool = True, build_ok: bool = True) -> types.ModuleType:
    major = int(version.split(".")[0])
    calls: list[tuple[Any, ...]] = []
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version  # type: ignore[attr-defined]
    trt.calls = calls  # type: ignore[attr-defined]

    class Logger:
        WARNING = "WARNING"

        def __init__(self, level: Any) -> None:
            calls.append(("Logger", level))

    class NetworkDefinitionCreationFlag:
        EXPLICIT_BATCH = 0
        STRONGLY_TYPED = 1

    flags = {"GPU_FALLBACK": "GPU_FALLBACK"}
    if major < 11:
        flags.update(FP16="FP16", INT8="INT8")
    BuilderFlag = type("BuilderFlag", (), flags)

    class MemoryPoolType:
        WORKSPACE = "WORKSPACE"

    class DeviceType:
        GPU = "GPU"
        DLA = "DLA"

    class Cache:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def serialize(self) -> bytes:
            return b"TIMING:" + self.data

    class Profile:
        def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
            calls.append(("profile.set_shape", name, lo, opt, hi))

    class Config:
        def __init__(self) -> None:
            self.cache: Cache | None = None

        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            calls.append(("config.set_memory_pool_limit", pool, size))

        def set_flag(self, flag: str) -> None:
            calls.append(("config.set_flag", flag))

        def __setattr__(self, name: str, value: Any) -> None:
            if name in ("default_device_type", "DLA_core"):
                calls.append((f"config.{name}", value))
            object.__setattr__(self, name, value)

        def add_optimization_profile(self, profile: Profile) -> int:
            calls.append(("config.add_optimization_profile",))
            return 0

        def create_timing_cache(self, data: bytes) -> Cache:
            calls.append(("config.create_timing_cache", bytes(data)))
            return Cache(bytes(data))

        def set_timing_cache(self, cache: Cache, ignore_mismatch: bool) -> bool:
            self.cache = cache
            return True

        def get_timing_cache(self) -> Cache:
            assert self.cache is not None
            return self.cache

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags = flags

    class Builder:
        def __init__(self, logger: Logger) -> None:
            calls.append(("Builder",))

        def create_network(self, flags: int = 0) -> Network:
            calls.append(("builder.create_network", flags))
            return Network(flags)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes | None:
            calls.append(("builder.build_serialized_network", network.flags))
            return b"ENGINE-" + version.encode() if build_ok else None

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger) -> None:
            self.errors: list[str] = []

        def parse(self, data: bytes, path: str | None = None) -> bool:
            calls.append(("parser.parse", len(data)))
            if not parse_ok:
                self.errors.append("In node 3 (Foo): UNSUPPORTED_NODE")
            return parse_ok

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, i: int) -> str:
            return self.errors[i]

    def Dims4(*dims: int) -> tuple[int, ...]:
        return tuple(dims)

    for name, obj in dict(
        Logger=Logger,
        NetworkDefinitionCreationFlag=NetworkDefinitionCreationFlag,
        BuilderFlag=BuilderFlag,
        MemoryPoolType=MemoryPoolType,
        DeviceType=DeviceType,
        Builder=Builder,
        OnnxParser=OnnxParser,
        Dims4=Dims4,
    ).items():
        setattr(trt, name, obj)
    return trt


def add_fake_runtime(trt: types.ModuleType, onnx_path: str, layout: str) -> None:
    """Give the fake a runtime whose 'engine' runs `onnx_path` on ONNX Runtime, reading its input from
    and writing its outputs to the raw addresses our backend binds: the buffer plumbing is real."""
    import ctypes

    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    capture: dict[str, Any] = {"graph": None}
    trt.capture = capture  # type: ignore[attr-defined]

    class DT:
        def __init__(self, name: str) -> None:
            self.name = name

    class TensorIOMode:
        INPUT = "INPUT"
        OUTPUT = "OUTPUT"

    class Context:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple[int, ...]] = {}
            self.addresses: dict[str, int] = {}
            self.executions = 0

        def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
            self.shapes[name] = tuple(shape)
            return True

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            b = self.shapes["images"][0]
            out = session.run(None, {"images": np.zeros(self.shapes["images"], np.float32)})
            return (b, *out[outputs.index(name)].shape[1:])

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            self.addresses[name] = ptr
            return True

        def _run(self, shape: tuple[int, ...], addresses: dict[str, int]) -> None:
            n = int(np.prod(shape))
            x = np.ctypeslib.as_array((ctypes.c_float * n).from_address(addresses["images"])).reshape(shape).copy()
            for name, arr in zip(outputs, session.run(None, {"images": x}), strict=True):
                arr = np.ascontiguousarray(arr)
                ctypes.memmove(addresses[name], arr.ctypes.data, arr.nbytes)
            self.executions += 1

        def execute_async_v3(self, stream: int) -> bool:
            calls.append(("context.execute_async_v3", stream))
            shape, addresses = self.shapes["images"], dict(self.addresses)
            if capture["graph"] is not None:  # being captured: record, do not run
                capture["graph"].ops.append(lambda: self._run(shape, addresses))
            else:
                self._run(shape, addresses)
            return True

    class Engine:
        num_io_tensors = 1 + len(outputs)

        def __init__(self) -> None:
            self.names = ["images", *outputs]

        def get_tensor_name(self, i: int) -> str:
            return self.names[i]

        def get_tensor_mode(self, name: str) -> str:
            return TensorIOMode.INPUT if name == "images" else TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str) -> DT:
            return DT("INT32" if name in ("num_dets", "det_classes") else "FLOAT")

        def create_execution_context(self) -> Context:
            trt.context = Context()  # type: ignore[attr-defined]
            return trt.context  # type: ignore[attr-defined]

    class Runtime:
        def __init__(self, logger: Any) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
            calls.append(("runtime.deserialize_cuda_engine", bytes(data)))
            return Engine() if data.startswith(b"ENGINE") else None

    calls = trt.calls  # type: ignore[attr-defined]
    trt.Runtime = Runtime  # type: ignore[attr-defined]
    trt.TensorIOMode = TensorIOMode  # type: ignore[attr-defined]
