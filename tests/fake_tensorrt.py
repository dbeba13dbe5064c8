"""A recording fake of the `tensorrt` module, for contract tests of OUR TensorRT logic.

It implements only the API surface mfssd_deploy uses, shaped per TensorRT line, and is as strict as
the real one where our code depends on it (each rule names its source in NVIDIA/TensorRT at a release
branch, or an NVIDIA documentation page):

- enum values as in include/NvInfer.h: 8.x NetworkDefinitionCreationFlag kEXPLICIT_BATCH = 0 (no
  STRONGLY_TYPED); 10.x kEXPLICIT_BATCH = 0 (deprecated), kSTRONGLY_TYPED = 1; 11.x kSTRONGLY_TYPED = 0
  (deprecated, ignored) and no EXPLICIT_BATCH; BuilderFlag FP16/INT8/OBEY_/PREFER_PRECISION_CONSTRAINTS
  absent on 11.x (release/11.1 python/src/infer/pyCore.cpp);
- the parser turns the ONNX into layers named after their nodes (onnx-tensorrt ImporterContext::
  registerLayer), with output types from ONNX type inference; a strongly typed network refuses
  setPrecision / setOutputType ("Strongly-typed networks reject calls to method setPrecision",
  release/10.3 include/NvInfer.h);
- DLA: `num_DLA_cores` (0 unless given); a build fails for a DLA core out of range, a dynamic profile
  on DLA ("provided profile must have same minimum, optimum, and maximum dimensions", NvInfer.h
  addInput) and, on 8.x, Q/DQ layers on DLA (no explicit quantization on DLA in 8.x);
- timing caches carry the TensorRT version and device they were made on: set_timing_cache(cache,
  False) returns False for a foreign one ("A failure will be reported if the CUDA device property in
  the provided cache is different", IBuilderConfig::setTimingCache), create_timing_cache returns None
  for a blob it cannot read, get_timing_cache returns None while no cache is attached, combine
  returns False across versions or devices;
- runtime (add_fake_runtime): an engine deserializes only on a device of the compute capability it
  was built for, its contexts and enqueues must run on the device it was deserialized on, output
  dimensions that depend on data read -1 (IExecutionContext::getTensorShape), an engine holding a
  data-dependent layer (NonMaxSuppression, NonZero) fails enqueueV3 under CUDA graph capture and
  invalidates it, and a captured graph replayed after its context's shape changed raises (a graph
  replays the context state of its capture); with the fake CUDA bindings (tests/fake_cuda.py) an
  enqueue runs only when its stream is synchronized, and only on live device memory of its device.
It proves which calls we make per version, not what TensorRT does with them.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Callable
from typing import Any

DATA_DEPENDENT_OPS = {"NonMaxSuppression", "NonZero"}


class FakeTensorRTError(AssertionError):
    """What the real TensorRT would do wrongly or refuse, made loud."""


def make_fake_tensorrt(
    version: str,
    parse_ok: bool = True,
    build_ok: bool = True,
    num_dla_cores: int = 0,
    device: str = "Orin-sm87",
) -> types.ModuleType:
    major = int(version.split(".")[0])
    calls: list[tuple[Any, ...]] = []
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version  # type: ignore[attr-defined]
    trt.calls = calls  # type: ignore[attr-defined]
    trt.networks = []  # type: ignore[attr-defined]
    cache_tag = f"{version}|{device}".encode()

    class Logger:
        WARNING = "WARNING"

        def __init__(self, level: Any) -> None:
            calls.append(("Logger", level))

    if major >= 11:
        net_flags = {"STRONGLY_TYPED": 0, "PREFER_JIT_PYTHON_PLUGINS": 1, "PREFER_AOT_PYTHON_PLUGINS": 2}
    elif major >= 10:
        net_flags = {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}
    else:
        net_flags = {"EXPLICIT_BATCH": 0, "EXPLICIT_PRECISION": 1}
    NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", net_flags)  # type: ignore[misc]
    if major >= 11:
        builder_flags = {"DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4}
    elif major >= 10:
        builder_flags = {"FP16": 0, "INT8": 1, "DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4,
                         "OBEY_PRECISION_CONSTRAINTS": 9, "PREFER_PRECISION_CONSTRAINTS": 10}  # fmt: skip
    else:
        builder_flags = {"FP16": 0, "INT8": 1, "DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 5,
                         "OBEY_PRECISION_CONSTRAINTS": 10, "PREFER_PRECISION_CONSTRAINTS": 11}  # fmt: skip
    BuilderFlag = enum.IntEnum("BuilderFlag", builder_flags)  # type: ignore[misc]

    class DataType(enum.IntEnum):
        FLOAT = 0
        HALF = 1
        INT8 = 2
        INT32 = 3
        BOOL = 4
        UINT8 = 5
        INT64 = 8

    class MemoryPoolType:
        WORKSPACE = "WORKSPACE"

    class DeviceType(enum.IntEnum):
        GPU = 0
        DLA = 1

    class Cache:
        def __init__(self, tag: bytes, entries: set[bytes]) -> None:
            self.tag, self.entries = tag, set(entries)

        def serialize(self) -> bytes:
            return b"TIMING|" + self.tag + b"|" + b",".join(sorted(self.entries))

        def combine(self, other: Cache, ignore_mismatch: bool) -> bool:
            calls.append(("cache.combine", other.tag, ignore_mismatch))
            if other.tag != self.tag and not ignore_mismatch:
                return False
            self.entries |= other.entries
            return True

    def read_cache(data: bytes) -> Cache | None:
        if not data:
            return Cache(cache_tag, set())
        parts = bytes(data).split(b"|")
        if len(parts) != 4 or parts[0] != b"TIMING":
            return None  # createTimingCache cannot read it: a null pointer, None in Python
        return Cache(parts[1] + b"|" + parts[2], {e for e in parts[3].split(b",") if e})

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple[Any, Any, Any]] = {}

        def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
            calls.append(("profile.set_shape", name, lo, opt, hi))
            self.shapes[name] = (lo, opt, hi)

    class Tensor:
        def __init__(self, dtype: DataType) -> None:
            self.dtype = dtype

    class Layer:
        def __init__(self, network: Network, name: str, type_: str, outputs: list[DataType]) -> None:
            self.network, self.name, self.type = network, name, type_
            self._outputs = [Tensor(d) for d in outputs]
            self._precision: DataType | None = None
            self.output_types: dict[int, DataType] = {}

        @property
        def num_outputs(self) -> int:
            return len(self._outputs)

        def get_output(self, i: int) -> Tensor:
            return self._outputs[i]

        @property
        def precision(self) -> DataType:
            return self._precision if self._precision is not None else DataType.FLOAT

        @precision.setter
        def precision(self, dtype: DataType) -> None:
            if self.network.strongly_typed:
                raise FakeTensorRTError(f"{self.name}: a strongly typed network rejects setPrecision")
            self._precision = dtype

        @property
        def precision_is_set(self) -> bool:
            return self._precision is not None

        def set_output_type(self, i: int, dtype: DataType) -> None:
            if self.network.strongly_typed:
                raise FakeTensorRTError(f"{self.name}: a strongly typed network rejects setOutputType")
            if self._outputs[i].dtype not in (DataType.FLOAT, DataType.HALF):
                raise FakeTensorRTError(f"{self.name}: output {i} is not floating point (TopK indices, shapes)")
            self.output_types[i] = dtype

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.layers: list[Layer] = []
            trt.networks.append(self)  # type: ignore[attr-defined]

        @property
        def strongly_typed(self) -> bool:
            bit = 1 << net_flags["STRONGLY_TYPED"] if "STRONGLY_TYPED" in net_flags else 0
            return major >= 11 or bool(self.flags & bit)

        @property
        def num_layers(self) -> int:
            return len(self.layers)

        def get_layer(self, i: int) -> Layer:
            return self.layers[i]

    class Config:
        def __init__(self) -> None:
            self.cache: Cache | None = None
            self.flags: set[str] = set()
            self.profiles: list[Profile] = []
            self.device_types: dict[str, DeviceType] = {}
            object.__setattr__(self, "default_device_type", DeviceType.GPU)
            object.__setattr__(self, "DLA_core", -1)

        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            calls.append(("config.set_memory_pool_limit", pool, size))

        def set_flag(self, flag: Any) -> None:
            calls.append(("config.set_flag", flag.name))
            self.flags.add(flag.name)

        def __setattr__(self, name: str, value: Any) -> None:
            if name in ("default_device_type", "DLA_core"):
                calls.append((f"config.{name}", getattr(value, "name", value)))
            object.__setattr__(self, name, value)

        def set_device_type(self, layer: Layer, device_type: DeviceType) -> None:
            self.device_types[layer.name] = device_type

        def add_optimization_profile(self, profile: Profile) -> int:
            calls.append(("config.add_optimization_profile",))
            self.profiles.append(profile)
            return 0

        def create_timing_cache(self, data: bytes) -> Cache | None:
            calls.append(("config.create_timing_cache", bytes(data)))
            return read_cache(bytes(data))

        def set_timing_cache(self, cache: Cache, ignore_mismatch: bool) -> bool:
            ok = ignore_mismatch or cache.tag == cache_tag
            calls.append(("config.set_timing_cache", cache.tag, ignore_mismatch, ok))
            if ok:
                self.cache = cache
            return ok

        def get_timing_cache(self) -> Cache | None:
            return self.cache

    class Builder:
        def __init__(self, logger: Logger) -> None:
            calls.append(("Builder",))

        @property
        def num_DLA_cores(self) -> int:
            return num_dla_cores

        def create_network(self, flags: int = 0) -> Network:
            calls.append(("builder.create_network", flags))
            return Network(flags)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes | None:
            calls.append(("builder.build_serialized_network", network.flags))
            if not build_ok:
                return None
            if config.default_device_type == DeviceType.DLA:
                if not 0 <= config.DLA_core < num_dla_cores:
                    calls.append(("error", f"DLA core {config.DLA_core} does not exist ({num_dla_cores} cores)"))
                    return None
                for profile in config.profiles:
                    if any(tuple(lo) != tuple(hi) for lo, _, hi in profile.shapes.values()):
                        calls.append(("error", "DLA does not support dynamic dimensions (min != max)"))
                        return None
                if major < 10 and any(la.type in ("QuantizeLinear", "DequantizeLinear") for la in network.layers):
                    calls.append(("error", "explicit quantization (Q/DQ) is not supported on DLA"))
                    return None
            if config.cache is not None:
                config.cache.entries.add(f"tactics-{len(network.layers)}".encode())
            return b"ENGINE-" + version.encode()

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger) -> None:
            self.network = network
            self.errors: list[str] = []

        def parse(self, data: bytes, path: str | None = None) -> bool:
            calls.append(("parser.parse", len(data)))
            if not parse_ok:
                self.errors.append("In node 3 (Foo): UNSUPPORTED_NODE")
                return False
            self.network.layers = _layers_of(bytes(data), self.network, Layer, DataType)
            return True

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
        DataType=DataType,
        MemoryPoolType=MemoryPoolType,
        DeviceType=DeviceType,
        Builder=Builder,
        OnnxParser=OnnxParser,
        Dims4=Dims4,
    ).items():
        setattr(trt, name, obj)
    return trt


def _layers_of(data: bytes, network: Any, layer_cls: Any, dtype: Any) -> list[Any]:
    """One layer per ONNX node, named after it, with the node's output types (ONNX type inference)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load_from_string(data))
    g = model.graph
    types_ = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.input, *g.output]}
    types_.update({i.name: i.data_type for i in g.initializer})
    to_trt = {onnx.TensorProto.FLOAT: dtype.FLOAT, onnx.TensorProto.FLOAT16: dtype.HALF,
              onnx.TensorProto.INT8: dtype.INT8, onnx.TensorProto.INT32: dtype.INT32,
              onnx.TensorProto.INT64: dtype.INT64, onnx.TensorProto.BOOL: dtype.BOOL,
              onnx.TensorProto.UINT8: dtype.UINT8}  # fmt: skip
    layers = []
    for n in g.node:
        if n.op_type == "Constant":  # no layer is added for Constant nodes (ImporterContext::registerLayer)
            continue
        outs = [to_trt.get(types_.get(o, onnx.TensorProto.FLOAT), dtype.FLOAT) for o in n.output]
        layers.append(layer_cls(network, n.name or f"node_of_{n.output[0]}", n.op_type, outs))
    return layers


def add_fake_runtime(
    trt: types.ModuleType,
    onnx_path: str,
    layout: str,
    *,
    current_device: Callable[[], int] = lambda: 0,
    device_capability: Callable[[int], tuple[int, int]] = lambda i: (8, 7),
    built_for: tuple[int, int] = (8, 7),
    capture_fails: bool = False,
    enqueue: Callable[[int, Callable[[], None]], None] | None = None,
    check_memory: Callable[[int, int, int], None] | None = None,
) -> None:
    """Give the fake a runtime whose 'engine' runs `onnx_path` on ONNX Runtime, reading its input from
    and writing its outputs to the raw addresses our backend binds: the buffer plumbing is real.
    `current_device` / `device_capability` are the (faked) CUDA device state, `built_for` the compute
    capability the engine was built for; `capture_fails` makes enqueueV3 fail under capture (as for an
    engine streaming its weights: "the graph will not be capturable", IExecutionContext::enqueueV3).
    `enqueue(stream, op)` (tests/fake_cuda.py) makes execution asynchronous: the engine runs when its stream
    is synchronized, in stream order with the copies; `check_memory(ptr, nbytes, device)` refuses a bound
    address that is not device memory of the engine's device (both None: run at once, any address)."""
    import ctypes

    import numpy as np
    import onnx
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    graph = onnx.load(onnx_path).graph
    data_dependent = capture_fails or any(n.op_type in DATA_DEPENDENT_OPS for n in graph.node)
    shapes_for: dict[tuple[int, ...], dict[str, tuple[int, ...]]] = {}

    def output_shapes(shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """Output dims for an input shape; a dim that differs between two inputs depends on data: -1."""
        if shape not in shapes_for:
            a = session.run(None, {"images": np.zeros(shape, np.float32)})
            b = session.run(None, {"images": np.random.default_rng(0).normal(size=shape).astype(np.float32)})
            shapes_for[shape] = {
                name: tuple(da if da == db else -1 for da, db in zip(x.shape, y.shape, strict=True))
                for name, x, y in zip(outputs, a, b, strict=True)
            }
        return shapes_for[shape]

    capture: dict[str, Any] = {"graph": None, "invalidated": False}
    trt.capture = capture  # type: ignore[attr-defined]
    trt.contexts = []  # type: ignore[attr-defined]
    calls = trt.calls  # type: ignore[attr-defined]

    class DT:
        def __init__(self, name: str) -> None:
            self.name = name

    class TensorIOMode:
        INPUT = "INPUT"
        OUTPUT = "OUTPUT"

    class Context:
        def __init__(self, engine: Engine) -> None:
            self.engine = engine
            self.shapes: dict[str, tuple[int, ...]] = {}
            self.addresses: dict[str, int] = {}
            self.executions = 0
            self.state = 0  # bumped whenever the input shape changes

        def _on_device(self, what: str) -> None:
            if current_device() != self.engine.device:
                raise FakeTensorRTError(
                    f"{what} on device {current_device()}, engine deserialized on device {self.engine.device}"
                )

        def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
            if self.shapes.get(name) != tuple(shape):
                self.state += 1
            self.shapes[name] = tuple(shape)
            return True

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return output_shapes(self.shapes["images"])[name]  # -1: data-dependent

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            self.addresses[name] = ptr
            return True

        def _run(self, shape: tuple[int, ...], addresses: dict[str, int]) -> None:
            n = int(np.prod(shape))
            if check_memory is not None:
                check_memory(addresses["images"], n * 4, self.engine.device)
            x = np.ctypeslib.as_array((ctypes.c_float * n).from_address(addresses["images"])).reshape(shape).copy()
            for name, arr in zip(outputs, session.run(None, {"images": x}), strict=True):
                arr = np.ascontiguousarray(arr)
                if check_memory is not None:
                    check_memory(addresses[name], arr.nbytes, self.engine.device)
                ctypes.memmove(addresses[name], arr.ctypes.data, arr.nbytes)
            self.executions += 1

        def execute_async_v3(self, stream: int) -> bool:
            calls.append(("context.execute_async_v3", stream))
            self._on_device("enqueueV3")
            shape, addresses, state = self.shapes["images"], dict(self.addresses), self.state
            if capture["graph"] is None:
                if enqueue is None:
                    self._run(shape, addresses)
                else:  # asynchronous: runs when the stream is synchronized
                    enqueue(stream, lambda: self._run(shape, addresses))
                return True
            if data_dependent:  # temporary storage of unpredictable size: not capturable
                capture["invalidated"] = True
                calls.append(("capture.failed", "data-dependent layer"))
                return False

            def replay() -> None:
                if self.state != state:
                    raise FakeTensorRTError("CUDA graph replayed after its context's shape changed since capture")
                self._run(shape, addresses)

            capture["graph"].ops.append(replay)
            return True

    class Engine:
        num_io_tensors = 1 + len(outputs)

        def __init__(self) -> None:
            self.names = ["images", *outputs]
            self.device = current_device()

        def get_tensor_name(self, i: int) -> str:
            return self.names[i]

        def get_tensor_mode(self, name: str) -> str:
            return TensorIOMode.INPUT if name == "images" else TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str) -> DT:
            return DT("INT32" if name in ("num_dets", "det_classes") else "FLOAT")

        def create_execution_context(self) -> Context:
            ctx = Context(self)
            ctx._on_device("createExecutionContext")
            trt.contexts.append(ctx)  # type: ignore[attr-defined]
            trt.context = trt.contexts[0]  # type: ignore[attr-defined]
            return ctx

    class Runtime:
        def __init__(self, logger: Any) -> None:
            object.__setattr__(self, "DLA_core", -1)

        def __setattr__(self, name: str, value: Any) -> None:
            if name == "DLA_core":
                calls.append(("runtime.DLA_core", value))
            object.__setattr__(self, name, value)

        def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
            calls.append(("runtime.deserialize_cuda_engine", bytes(data)))
            if not data.startswith(b"ENGINE"):
                return None
            if tuple(device_capability(current_device())) != tuple(built_for):
                calls.append(("error", f"engine built for sm_{built_for}, device {current_device()} is not"))
                return None
            return Engine()

    trt.Runtime = Runtime  # type: ignore[attr-defined]
    trt.TensorIOMode = TensorIOMode  # type: ignore[attr-defined]
