"""Engine metadata (NAME.engine.json) and the compatibility check run before an engine is loaded.

TensorRT engines are specific to the TensorRT version and the GPU that built them; loading one
elsewhere fails deep inside TensorRT or, worse, behaves wrongly. We refuse first, with both sides named.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import ModuleType
from typing import Any

from mfssd_deploy.artifacts import read_meta
from mfssd_deploy.errors import MfssdError, MissingExtraError

log = logging.getLogger("mfssd_deploy")
TRT_INSTALL = (
    'pip install "mfssd-deploy[trt]" (with PyTorch) or "mfssd-deploy[trt-lean]" (without); on Jetson, '
    "TensorRT comes with JetPack"
)


def import_tensorrt() -> ModuleType:
    """The real tensorrt module, or a one-line error naming the install command.

    tensorrt-stubs installs a `tensorrt` folder of .pyi files only, which imports as an empty
    namespace package: check for the API, not just the import.
    """
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise MissingExtraError(f"TensorRT is not installed: {TRT_INSTALL}") from exc
    if not hasattr(trt, "Builder") or not hasattr(trt, "__version__"):
        raise MissingExtraError(f"TensorRT is not installed (only its type stubs are): {TRT_INSTALL}")
    return trt


def read_engine_meta(engine: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(engine)
    if not path.is_file():
        raise MfssdError(f"engine not found: {path}")
    return read_meta(path)  # the sidecar NAME.engine.json, through the contract's one reader


def check_engine_compat(
    meta: dict[str, Any], engine: str, trt_version: str, gpu_name: str, compute_capability: tuple[int, int]
) -> None:
    """Refuse an engine built for another TensorRT version or GPU architecture."""
    fix = "rebuild it on this machine with mfssd-export --trt (engines are specific to TensorRT version and GPU)"
    if str(meta["tensorrt_version"]) != trt_version:
        raise MfssdError(
            f"{engine} was built with TensorRT {meta['tensorrt_version']} "
            f"but TensorRT {trt_version} is installed: {fix}"
        )
    built_cc = tuple(int(v) for v in meta["compute_capability"])
    if built_cc != tuple(compute_capability):
        raise MfssdError(
            f"{engine} was built for {meta['gpu_name']} (sm_{built_cc[0]}{built_cc[1]}) but this GPU is {gpu_name} "
            f"(sm_{compute_capability[0]}{compute_capability[1]}): {fix}"
        )
    if meta["gpu_name"] != gpu_name:
        log.warning("%s was built on %s and runs on %s (same compute capability)", engine, meta["gpu_name"], gpu_name)
