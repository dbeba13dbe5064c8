"""TensorRT engines of the benchmark's model groups, built for the GPU the benchmark runs on.

An engine only runs on the GPU model and TensorRT version that built it, so the cache file name
carries both (and the batch profile): a new GPU or TensorRT builds again, an old engine is never
loaded by mistake. Building takes minutes per engine at full size; once built, it is reused.
A precision this GPU/TensorRT cannot build well (FP16 on desktop Pascal) is left out with a
warning line, never replaced by something else.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mfssd_deploy.artifacts import ENGINE_KINDS, KINDS
from mfssd_deploy.errors import MfssdError

log = logging.getLogger(__name__)

# format name -> TensorRT precision (the artifact table's engine rows); each is built from the group's end2end ONNX
ENGINE_FORMATS = {name: KINDS[name].precision for name in ENGINE_KINDS}


@dataclass(frozen=True)
class EngineTarget:
    gpu: tuple[str, tuple[int, int]]  # name, compute capability (tensorrt_build.gpu_info)
    tensorrt_version: str
    batch: tuple[int, int, int]  # min, opt, max of the optimization profile
    formats: tuple[str, ...]  # keys of ENGINE_FORMATS
    workspace_gb: float = 2.0  # builder workspace (the engine options mfssd-export shares, cli/options.py)
    timing_cache: Path | None = None  # None: one per GPU, TensorRT version and profile, beside the engines


def engine_tag(target: EngineTarget) -> str:
    """What an engine is specific to, as a file-name part: GPU, compute capability, TensorRT, profile."""
    name, (major, minor) = target.gpu
    gpu = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return f"{gpu}-sm{major}{minor}-trt{target.tensorrt_version}-b{'-'.join(map(str, target.batch))}"


def build_group_engines(onnx: dict[str, Path], cache: Path, key: str, target: EngineTarget,
                        export_fp16: Callable[[], Path]) -> dict[str, Path]:  # fmt: skip
    """Engines per format for one exported model; `onnx` maps "fp32"/"int8" to its end2end ONNX files.

    `export_fp16` writes the FP16 end2end ONNX when this TensorRT builds FP16 from one (11.x:
    strongly typed), so it is only exported where it is needed.
    """
    from mfssd_deploy.exporters.tensorrt_build import BuildRequest, build_engine, plan_build

    tag = engine_tag(target)
    _, cc = target.gpu
    out: dict[str, Path] = {}
    for fmt in target.formats:
        precision = ENGINE_FORMATS[fmt]
        path = cache / f"{key}.{tag}.end2end.{precision}.engine"
        if not path.is_file():
            try:
                plan = plan_build(target.tensorrt_version, precision, compute_capability=cc)
                if plan.warnings:  # e.g. FP16 on desktop Pascal: slower than FP32, not a deployment path
                    raise MfssdError(plan.warnings[0])
                sources = dict(onnx)
                if plan.onnx_source == "fp16":
                    sources["fp16"] = export_fp16()
                log.info("building the TensorRT %s engine of %s for %s (once; cached in %s)",
                         precision, key, target.gpu[0], cache)  # fmt: skip
                request = BuildRequest(onnx=sources, out=path, precision=precision, batch=target.batch,
                                       workspace_gb=target.workspace_gb,
                                       timing_cache=target.timing_cache or cache / f"timing.{tag}.cache")  # fmt: skip
                build_engine(request, gpu=target.gpu)
            except MfssdError as exc:
                log.warning("no %s rows for %s: %s", fmt, key, exc)
                continue
        out[fmt] = path
    return out
