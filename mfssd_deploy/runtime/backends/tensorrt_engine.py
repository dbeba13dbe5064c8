"""What both TensorRT backends share, without torch: loading a checked engine, its I/O contract, the batch profile.

tensorrt_backend.py holds the buffers as torch CUDA tensors (raw outputs stay on the GPU for the torch NMS);
tensorrt_lean.py holds them with NVIDIA's CUDA bindings (end2end engines, numpy outputs, no torch). The
engine itself is handled here the same way for both, each rule with its source (docs/tensorrt.md, "Running"):

- DLA engines: `runtime.DLA_core` is set before deserializing (IRuntime::setDLACore, "The DLA core to
  execute the engine on", NVIDIA/TensorRT release/10.3 include/NvInferRuntime.h); their profile is static
  and a smaller batch is padded up to it ("The runtime dimensions must be the same as the dimensions used
  for building", DLA Supported Layers and Restrictions).
- deserializeCudaEngine returns null (None in Python) for a plan it cannot load: one line, rebuild it.
- An output dimension of -1 depends on data ("A dimension in an output tensor will have a -1 wildcard value
  if the dimension depends on values of execution tensors", IExecutionContext::getTensorShape): no mfssd
  layout has one, so it is refused rather than given a buffer of the wrong size.
- CUDA graphs only for the raw layout: an end2end engine's NMS output is data-dependent ("SelectedIndices
  ... has shape [NumOutputBoxes, 3]", INMSLayer, release/10.3 include/NvInfer.h), so it runs eagerly.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from mfssd_deploy.artifacts import INPUT, OUTPUTS
from mfssd_deploy.errors import MfssdError

log = logging.getLogger("mfssd_deploy")
# TensorRT DataType names -> numpy dtypes (BF16 has none: such an engine is refused by the numpy buffers).
NUMPY_DTYPES = {"FLOAT": "float32", "HALF": "float16", "INT32": "int32", "INT64": "int64", "INT8": "int8",
                "UINT8": "uint8", "BOOL": "bool"}  # fmt: skip


def dla_core(meta: dict[str, Any]) -> int | None:
    plan = meta.get("plan") or {}
    core = plan.get("dla_core") if isinstance(plan, dict) else None
    return None if core is None else int(core)


def deserialize(trt: Any, path: Path, meta: dict[str, Any], logger: Any) -> tuple[Any, Any]:
    """(runtime, engine) for the engine file, on the current CUDA device; the runtime must outlive the engine."""
    runtime = trt.Runtime(logger)
    core = dla_core(meta)
    if core is not None:
        runtime.DLA_core = core
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        raise MfssdError(
            f"{path} could not be deserialized (corrupt, built by another TensorRT or for another GPU): rebuild it"
        )
    return runtime, engine


def io_contract(trt: Any, engine: Any, layout: str, path: Path) -> tuple[list[str], dict[str, str]]:
    """The output names in the layout's order, and every tensor's TensorRT dtype name; refuses another I/O."""
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    outputs = list(OUTPUTS[layout])
    if inputs != [INPUT] or sorted(set(names) - set(inputs)) != sorted(outputs):
        raise MfssdError(f"{path}: unexpected I/O tensors {names} for the {layout} layout")
    return outputs, {n: str(engine.get_tensor_dtype(n).name) for n in names}


def batch_range(meta: dict[str, Any]) -> tuple[int, int]:
    profile = meta["profiles"][INPUT]
    return int(profile["min"][0]), int(profile["max"][0])


def graphs_allowed(requested: bool, layout: str, name: str) -> bool:
    """Whether CUDA graphs are used: asked for, and the raw layout (see the module docstring)."""
    if requested and layout != "raw":
        log.warning("%s: no CUDA graphs for an end2end engine (its NMS has data-dependent output sizes): running "
                    "eagerly; graphs are for the raw layout", name)  # fmt: skip
        return False
    return requested


def pad_batch(x: np.ndarray, min_batch: int, max_batch: int) -> tuple[np.ndarray, int]:
    """(the batch the engine runs, the caller's batch size): refused above the profile, zero-padded up to a
    static (DLA) profile's size below it."""
    n = int(x.shape[0])
    if not 1 <= n <= max_batch:
        raise MfssdError(
            f"batch {n} is outside the engine's profile {min_batch}..{max_batch}: "
            "use Detector(batch_size=...) within it or rebuild with mfssd-export --trt --batch-profile"
        )
    if n < min_batch:
        x = np.concatenate([x, np.zeros((min_batch - n, *x.shape[1:]), x.dtype)])
    return x, n


def output_shapes(context: Any, outputs: list[str]) -> dict[str, tuple[int, ...]]:
    """Each output's shape for the input shape set on `context`; -1 (data-dependent) is refused."""
    shapes = {}
    for name in outputs:
        dims = context.get_tensor_shape(name)
        shape = tuple(int(dims[i]) for i in range(len(dims)))
        if any(d < 0 for d in shape):
            raise MfssdError(f"output {name} has a data-dependent shape {shape}: not an mfssd engine layout")
        shapes[name] = shape
    return shapes
