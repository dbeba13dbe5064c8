"""TensorRT engine builder, one code path for TensorRT 8.5 to 11.x (see docs/tensorrt.md).

The decisions (which ONNX, which network and builder flags, which warnings) are a pure function,
`plan_build`, of the TensorRT version, the precision, DLA and the GPU; `build_engine` then only
carries the plan out against the `tensorrt` module. Tests check the plans and run `build_engine`
against a recording fake `tensorrt` (contract tests: they prove our branching, not TensorRT).

- 8.5 / 8.6: weak typing. EXPLICIT_BATCH network flag; FP16 / INT8 builder flags; a Q/DQ ONNX
  still needs the INT8 flag.
- 10.x: explicit batch is the only mode (no flag); the precision flags still work.
- 11.x: strongly typed only (STRONGLY_TYPED network flag, no precision flags): FP16 comes from the
  FP16 ONNX, INT8 from the Q/DQ ONNX.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mfssd_deploy.artifacts import ENGINE_PRECISIONS, INPUT
from mfssd_deploy.engine_meta import TRT_INSTALL, import_tensorrt
from mfssd_deploy.errors import MfssdError, MissingExtraError
from mfssd_deploy.fileio import atomic_path, write_json

log = logging.getLogger("mfssd_deploy.export")
PRECISIONS = ENGINE_PRECISIONS
PASCAL = {(6, 0), (6, 1)}  # desktop Pascal: FP16 at 1/64 rate (sm_62, Jetson TX2, has fast FP16)


def parse_version(version: str) -> tuple[int, int]:
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise MfssdError(f"cannot read the TensorRT version {version!r}") from None


@dataclass(frozen=True)
class BuildPlan:
    onnx_source: str  # which ONNX artifact to parse: "fp32" | "fp16" | "int8"
    explicit_batch_flag: bool
    strongly_typed: bool
    builder_flags: tuple[str, ...]  # names in trt.BuilderFlag
    dla_core: int | None
    warnings: tuple[str, ...] = ()


def plan_build(
    version: str,
    precision: str,
    *,
    dla_core: int | None = None,
    compute_capability: tuple[int, int] | None = None,
) -> BuildPlan:
    """What to build for `precision` on TensorRT `version` (pure; raises MfssdError for impossible asks)."""
    if precision not in PRECISIONS:
        raise MfssdError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    major, minor = parse_version(version)
    if (major, minor) < (8, 5):
        raise MfssdError(f"TensorRT {version} is too old: 8.5 is the first that parses ONNX NonMaxSuppression natively")
    warnings: list[str] = []
    pascal = compute_capability in PASCAL
    if pascal and major >= 10:
        raise MfssdError(
            f"TensorRT {version} does not run on this Pascal GPU (sm_{compute_capability[0]}{compute_capability[1]}):"  # type: ignore[index]
            " 8.6 is the last TensorRT for Pascal; install tensorrt 8.6"
        )
    if pascal and precision == "fp16":
        warnings.append("FP16 runs at 1/64 rate on Pascal GPUs (GTX 10xx): it will not be faster; use --precision int8")
    if dla_core is not None:
        if precision == "fp32":
            raise MfssdError("DLA runs FP16 or INT8 only: use --precision fp16 or int8 with --dla-core")
        if major >= 11:
            raise MfssdError(
                f"DLA is a Jetson engine and TensorRT {version} is not shipped for Jetson (JetPack has <= 10.x)"
            )
    flags: list[str] = []
    if major >= 11:
        source = precision  # strongly typed: the ONNX carries the precision
        strongly_typed = True
    else:
        strongly_typed = False
        source = "int8" if precision == "int8" else "fp32"
        if precision == "fp16":
            flags.append("FP16")
        elif precision == "int8":
            flags.append("INT8")  # a Q/DQ network still needs it on 8.x/10.x
            if not pascal:
                flags.append("FP16")  # layers left unquantized may run in FP16
    if dla_core is not None:
        flags.append("GPU_FALLBACK")
    return BuildPlan(source, major < 10, strongly_typed, tuple(flags), dla_core, tuple(warnings))


@dataclass
class BuildRequest:
    onnx: dict[str, Path]  # precision source -> ONNX file ("fp32", "fp16", "int8")
    out: Path  # engines/NAME.engine
    precision: str = "fp16"
    batch: tuple[int, int, int] = (1, 8, 16)  # min, opt, max of the optimization profile
    workspace_gb: float = 2.0
    timing_cache: Path | None = None
    dla_core: int | None = None
    extra_meta: dict[str, Any] = field(default_factory=dict)


def gpu_info() -> tuple[str, tuple[int, int]]:
    """Name and compute capability of the current CUDA device (through torch, a dependency of [trt])."""
    try:
        import torch
    except ImportError as exc:
        raise MissingExtraError(f"building engines needs torch to identify the GPU: {TRT_INSTALL}") from exc
    if not torch.cuda.is_available():
        raise MfssdError("no CUDA GPU is visible: build TensorRT engines on the GPU (or Jetson) that will run them")
    return torch.cuda.get_device_name(), torch.cuda.get_device_capability()


def build_engine(req: BuildRequest, gpu: tuple[str, tuple[int, int]] | None = None) -> dict[str, Any]:
    """Build, serialize and write NAME.engine + NAME.engine.json; returns the engine metadata.

    `import tensorrt` here is type-checked against tensorrt-stubs; contract tests put a recording
    fake in sys.modules["tensorrt"].
    """
    import onnx

    from mfssd_deploy.exporters.onnx_export import read_metadata
    from mfssd_deploy.exporters.trt_lint import lint

    import_tensorrt()
    import tensorrt as trt

    gpu_name, cc = gpu or gpu_info()
    version = str(trt.__version__)
    plan = plan_build(version, req.precision, dla_core=req.dla_core, compute_capability=cc)
    for w in plan.warnings:
        log.warning("warning: %s", w)
    src = req.onnx.get(plan.onnx_source)
    if src is None:
        hint = {"fp16": "--fp16", "int8": "--int8 --calib DIR"}.get(plan.onnx_source, "")
        raise MfssdError(
            f"TensorRT {version} builds {req.precision} from the {plan.onnx_source} ONNX: export it ({hint})"
        )
    model = onnx.load(src)
    problems = lint(model, version)
    if problems:
        raise MfssdError(
            f"{src.name} will not parse in TensorRT {version}: {problems[0]} ({len(problems)} problems; "
            f"see mfssd-export --check-trt {version})"
        )
    meta = read_metadata(model)
    size = meta["config"]["input_size"]

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    net_flags = 0
    if plan.explicit_batch_flag:
        net_flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if plan.strongly_typed:
        net_flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(net_flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(src.read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise MfssdError(f"TensorRT {version} could not parse {src.name}: {errors[0] if errors else 'unknown error'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(req.workspace_gb * (1 << 30)))
    for flag in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if plan.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
    b_min, b_opt, b_max = req.batch
    if not 1 <= b_min <= b_opt <= b_max:
        raise MfssdError(f"--batch {b_min},{b_opt},{b_max}: need 1 <= MIN <= OPT <= MAX")
    profile = builder.create_optimization_profile()
    shape = lambda b: (b, 3, size, size)  # noqa: E731
    profile.set_shape(INPUT, trt.Dims4(*shape(b_min)), trt.Dims4(*shape(b_opt)), trt.Dims4(*shape(b_max)))
    config.add_optimization_profile(profile)
    cache_bytes = req.timing_cache.read_bytes() if req.timing_cache and req.timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, False)

    t0 = time.time()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise MfssdError(f"TensorRT {version} failed to build {req.out.name} (see the TensorRT log above)")
    seconds = time.time() - t0
    with atomic_path(req.out) as tmp:
        tmp.write_bytes(bytes(serialized))
    if req.timing_cache is not None:
        with atomic_path(req.timing_cache) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    engine_meta = {
        **meta,
        "precision": req.precision,
        "onnx": str(src),
        "tensorrt_version": version,
        "gpu_name": gpu_name,
        "compute_capability": list(cc),
        "profiles": {INPUT: {"min": list(shape(b_min)), "opt": list(shape(b_opt)), "max": list(shape(b_max))}},
        "build_seconds": seconds,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "plan": asdict(plan),
        "workspace_gb": req.workspace_gb,
        **req.extra_meta,
    }
    write_json(req.out.with_name(req.out.name + ".json"), engine_meta)
    return engine_meta
