"""Inference backends behind the Detector, one file each, and the registry that picks them.

Every backend satisfies `Backend`: `infer(x)` on a preprocessed float32 [B,3,S,S] batch returns the
artifact's outputs in the contract's order (raw: loc, softmax scores; end2end: num_dets, det_boxes,
det_scores, det_classes). Raw outputs may stay on the backend's device (torch tensors) so the decode
+ NMS runs there too. Adding a backend is one file plus one line in REGISTRY.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from mfssd_deploy.artifacts import ONNX_PRECISIONS, read_meta
from mfssd_deploy.config import ModelConfig
from mfssd_deploy.errors import MfssdError, installed


@runtime_checkable
class Backend(Protocol):
    name: str
    layout: str  # "raw" | "end2end" (artifacts.LAYOUTS)
    config: ModelConfig
    meta: dict[str, Any]
    device: str
    thread_safe: bool  # False: the Detector serialises infer calls (a TensorRT execution context)

    def infer(self, x: Any) -> Any: ...


@dataclass(frozen=True)
class CpuRuntime:
    """One way mfssd-bench runs an ONNX file on a CPU in a backend (--runtimes): the Detector's options for it,
    the option that takes --threads, and a reduced precision it runs FP32 files in (OpenVINO's bf16 hint:
    FP32 files only, their rows carry that precision and are read against the backend's first runtime)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    threads_option: str = "threads"
    hint: str | None = None


@dataclass(frozen=True)
class Entry:
    module: str  # mfssd_deploy.runtime.backends.<module>
    cls: str  # a class, or a function that returns the backend (open_tensorrt)
    suffixes: tuple[str, ...]  # model files it loads
    takes_max_batch: bool = False  # gets the Detector's batch_size (an explicit TensorRT EP profile)
    extra: str | None = None  # the pip extra that installs it (None: the lean install has it)
    module_needed: str | None = None  # the importable module that tells whether it is installed
    cpu_runtimes: tuple[CpuRuntime, ...] = ()  # how the bench runs an ONNX file on a CPU in this backend
    title: str = ""  # the runtime's own name, for messages


REGISTRY: dict[str, Entry] = {
    "torch": Entry("torch_backend", "TorchBackend", (".pt",), extra="torch", module_needed="torch", title="PyTorch"),
    # interleaved bench configurations: spinning ONNX Runtime threads would slow whatever runs next
    # (measured: PyTorch eager 30 -> 100 ms per call right after an ONNX Runtime call)
    "onnxruntime": Entry("onnxruntime_backend", "OnnxRuntimeBackend", (".onnx",), takes_max_batch=True,
                         module_needed="onnxruntime", title="ONNX Runtime",
                         cpu_runtimes=(CpuRuntime("onnxruntime", {"spinning": False}, "intra_op_threads"),)),
    # open_tensorrt picks the buffers: torch CUDA tensors, or NVIDIA's CUDA bindings (end2end, no torch)
    "tensorrt": Entry("tensorrt_backend", "open_tensorrt", (".engine",), extra="trt", module_needed="tensorrt",
                      title="TensorRT"),
    # OpenVINO runs FP32 files at its f32 hint and, as a second bench runtime, at its bf16 hint
    "openvino": Entry("openvino_backend", "OpenVinoBackend", (".onnx",), extra="openvino", module_needed="openvino",
                      title="OpenVINO",
                      cpu_runtimes=(CpuRuntime("openvino", {"precision_hint": "f32"}),
                                    CpuRuntime("openvino-bf16", {"precision_hint": "bf16"}, hint="bf16"))),
}  # fmt: skip
# The CPU runtimes an ONNX file is benchmarked in (mfssd-bench --runtimes), from the table above: name -> (backend,
# runtime).
RUNTIMES: dict[str, tuple[str, CpuRuntime]] = {r.name: (n, r) for n, e in REGISTRY.items() for r in e.cpu_runtimes}
CPU_RUNTIMES: tuple[str, ...] = tuple(RUNTIMES)


def base_runtime(runtime: str) -> str:
    """The runtime a hinted one is read against: its backend's first (openvino-bf16 -> openvino)."""
    backend, _ = RUNTIMES[runtime]
    return REGISTRY[backend].cpu_runtimes[0].name


# The backend a file gets when none is named: the first registered one that loads its suffix.
DEFAULT_FOR_SUFFIX: dict[str, str] = {}
for _name, _entry in REGISTRY.items():
    for _suffix in _entry.suffixes:
        DEFAULT_FOR_SUFFIX.setdefault(_suffix, _name)


# Which runtime runs an .onnx on a CPU when none is named: the precision's cpu_runtime (artifacts.ONNX_PRECISIONS,
# measured in benchmarks/int8_placement: OpenVINO for both INT8 files, ONNX Runtime for FP32 and FP16) where that
# runtime is installed; every GPU stays on ONNX Runtime. MFSSD_ONNX_CPU_BACKEND=onnxruntime|openvino overrides it.
ONNX_CPU_ENV = "MFSSD_ONNX_CPU_BACKEND"


def pinned_cpu_backend() -> str | None:
    """The backend MFSSD_ONNX_CPU_BACKEND pins for .onnx files on a CPU (None: the rule above decides); the
    Detector and the bench both read it here."""
    pinned = os.environ.get(ONNX_CPU_ENV)
    if not pinned:
        return None
    takers = [n for n, e in REGISTRY.items() if e.cpu_runtimes]
    if pinned not in takers:
        raise MfssdError(f"{ONNX_CPU_ENV}={pinned!r}: set it to {' or '.join(takers)} (or unset it)")
    return pinned


def rule_text() -> str:
    """default_backend's rule in words (every command's --model help): the registry's default per suffix and
    the precisions whose CPU runtime is another one (artifacts.ONNX_PRECISIONS)."""
    by_suffix = ", ".join(f"{REGISTRY[n].title} ({s})" for s, n in DEFAULT_FOR_SUFFIX.items())
    moved: dict[str, list[str]] = {}
    for p in ONNX_PRECISIONS.values():
        if p.cpu_runtime != DEFAULT_FOR_SUFFIX[".onnx"]:
            moved.setdefault(p.cpu_runtime, []).append(p.suffix)
    cpu = "; ".join(f"on a CPU the {' and '.join(files)} ONNX files run in {REGISTRY[n].title} where it is installed"
                    for n, files in moved.items())  # fmt: skip
    takers = "|".join(n for n, e in REGISTRY.items() if e.cpu_runtimes)
    measured = "measured: 1.8-14x ONNX Runtime's speed on those files, benchmarks/int8_placement"
    return f"runs in {by_suffix}; {cpu} ({measured}); {ONNX_CPU_ENV}={takers} overrides"


def default_backend(path: Path, device: str, options: dict[str, Any] | None = None) -> str:
    """The backend a file gets when none is named (DEFAULT_FOR_SUFFIX, except the CPU rule above; options
    meant for a backend, e.g. ONNX Runtime's provider_options, keep the file on the default one)."""
    suffix = path.suffix.lower()
    default = DEFAULT_FOR_SUFFIX.get(suffix)
    if default is None:
        known = ", ".join(sorted(DEFAULT_FOR_SUFFIX))
        raise MfssdError(f"{path}: unknown model type {path.suffix!r}; pass a {known} file")
    if suffix != ".onnx" or device != "cpu" or options:
        return default
    forced = pinned_cpu_backend()
    if forced:
        return forced
    spec = ONNX_PRECISIONS.get(str(read_meta(path).get("precision", "fp32")))
    faster = spec.cpu_runtime if spec else default
    return faster if faster != default and installed(REGISTRY[faster].module_needed or faster) else default


def make_backend(path: Path, backend: str | None, device: str, batch_size: int, options: dict[str, Any]) -> Backend:
    """The backend for a model file: `backend` if given (it must load this suffix), else default_backend."""
    suffix = path.suffix.lower()
    name = backend or default_backend(path, device, options)
    entry = REGISTRY.get(name)
    if entry is None:
        raise MfssdError(f"backend {name!r}: choose one of {', '.join(REGISTRY)}")
    if suffix not in entry.suffixes:
        takers = [n for n, e in REGISTRY.items() if suffix in e.suffixes]
        raise MfssdError(f"backend {name!r} cannot run a {path.suffix} file (use {' or '.join(map(repr, takers))})")
    cls = getattr(importlib.import_module(f"mfssd_deploy.runtime.backends.{entry.module}"), entry.cls)
    kwargs = {"max_batch": batch_size, **options} if entry.takes_max_batch else options
    made: Backend = cls(path, device, **kwargs)
    return made
