"""TensorRT engine builder, one code path for TensorRT 8.5 to 11.x (see docs/tensorrt.md).

The decisions (which ONNX, which network and builder flags, which warnings) are a pure function,
`plan_build`, of the TensorRT version, the precision, DLA and the GPU; `build_engine` then only
carries the plan out against the `tensorrt` module. Tests check the plans and run `build_engine`
against a recording fake `tensorrt` (contract tests: they prove our branching, not TensorRT).
Each rule names its source (NVIDIA/TensorRT or onnx/onnx-tensorrt at a release branch, or an
NVIDIA documentation page); docs/tensorrt.md repeats them in one place.

- 8.5 / 8.6: weak typing. EXPLICIT_BATCH network flag; FP16 / INT8 builder flags; a Q/DQ ONNX
  still needs the INT8 flag.
- 10.x: explicit batch is the only mode (no flag; kEXPLICIT_BATCH is "Deprecated in TensorRT 10.0",
  NVIDIA/TensorRT release/10.0 include/NvInfer.h); the precision flags still work.
- 11.x: strongly typed only. kSTRONGLY_TYPED is "Deprecated in TensorRT 11.0. Strongly typed mode is
  always enabled ... retained for API compatibility but is ignored" (release/11.0 include/NvInfer.h),
  so no network flag is set; BuilderFlag has no FP16/INT8 (release/11.1 python/src/infer/pyCore.cpp):
  FP16 comes from the FP16 ONNX, INT8 from the Q/DQ ONNX.
- Weakly typed builds with the FP16 flag keep the post-processing (decode, TopK, NMS: the `e2e/`
  layers) in FP32 with layer precision constraints (ILayer::setPrecision / setOutputType with
  kOBEY_PRECISION_CONSTRAINTS, release/10.3 include/NvInfer.h); strongly typed builds take the
  types of the FP16 ONNX, whose post-processing is FP32 (exporters/fp16.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mfssd_deploy.artifacts import ENGINE_PRECISIONS, INPUT, METADATA_KEY, read_meta, sidecar_path
from mfssd_deploy.errors import MfssdError, MissingExtraError
from mfssd_deploy.fileio import atomic_path, sha256_file, write_json
from mfssd_deploy.runtime.backends.tensorrt_cuda import INSTALL
from mfssd_deploy.runtime.engine_meta import TRT_INSTALL, import_tensorrt

log = logging.getLogger("mfssd_deploy.export")
PRECISIONS = ENGINE_PRECISIONS
# Desktop Pascal: no TensorRT 10+ ("Unsupported SM"); 8.6 is the last line for sm_60/sm_61.
PASCAL = {(6, 0), (6, 1)}
# FP16 arithmetic throughput per SM per clock (CUDA C++ Programming Guide, "Throughput of Native
# Arithmetic Instructions"): cc 6.0 (P100) 128 FP16 vs 64 FP32 (fast), cc 6.1 (GTX 10xx) 2 FP16 vs
# 128 FP32 (1/64), cc 6.2 (TX2) 256 vs 128. Only sm_61 is slow at FP16.
SLOW_FP16 = {(6, 1)}
# Node-name prefix of the end2end post-processing (exporters/end2end.py, _Builder(prefix="e2e")).
# The ONNX parser names each layer after its node (onnx/onnx-tensorrt 10.1-GA ImporterContext.cpp,
# registerLayer: layer->setName(uniqueName) from getNodeName(node)), so the prefix survives parsing.
POSTPROCESS_PREFIX = "e2e/"


def parse_version(version: str) -> tuple[int, int]:
    major, minor, _ = parse_version3(version)
    return major, minor


def parse_version3(version: str) -> tuple[int, int, int]:
    parts = version.split(".")
    try:
        return tuple(int(parts[i]) if len(parts) > i else 0 for i in range(3))  # type: ignore[return-value]
    except ValueError:
        raise MfssdError(f"cannot read the TensorRT version {version!r}") from None


def dla_unsupported(version: str) -> str | None:
    """Why TensorRT `version` builds no DLA engine for a Jetson, or None where it does.

    TensorRT 11.4.1 "Working with DLA" (docs.nvidia.com/deeplearning/tensorrt/11.4.1/inference-library/
    work-with-dla.html): supported on Jetson AGX Orin with JetPack 7.2.2+; "Jetson Orin on NVIDIA
    JetPack 6.x ... must remain on a TensorRT 10.x release ... TensorRT 10.7 was the last 10.x release
    that supported DLA"; "DLA was unavailable in TensorRT 11.0 through 11.3 ... TensorRT 11.4.0
    supported DLA only on Windows on ARM" (no GPU fallback there, which the end2end NMS needs).
    """
    major, minor, patch = parse_version3(version)
    if major == 10 and minor > 7:
        return f"TensorRT {version} has no DLA: 10.7 was the last 10.x with DLA (JetPack 6.x ships 10.3)"
    if major >= 11 and (major, minor, patch) < (11, 4, 1):
        return (
            f"TensorRT {version} has no DLA for Jetson (11.0 to 11.3 have none; 11.4.0 only on Windows on ARM): "
            "use 11.4.1+ on AGX Orin with JetPack 7.2.2+, or JetPack 6's TensorRT 10.3"
        )
    return None


@dataclass(frozen=True)
class BuildPlan:
    onnx_source: str  # which ONNX artifact to parse: "fp32" | "fp16" | "int8"
    explicit_batch_flag: bool
    strongly_typed: bool
    builder_flags: tuple[str, ...]  # names in trt.BuilderFlag
    dla_core: int | None
    warnings: tuple[str, ...] = ()
    network_flags: tuple[str, ...] = ()  # names in trt.NetworkDefinitionCreationFlag
    fp32_postprocess: bool = False  # pin the e2e/ layers to FP32 (weakly typed build with the FP16 flag)
    static_batch: bool = False  # profile min = opt = max (DLA)


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
    cc = compute_capability
    if cc in PASCAL and major >= 10:
        raise MfssdError(
            f"TensorRT {version} does not run on this Pascal GPU (sm_{cc[0]}{cc[1]}):"
            " 8.6 is the last TensorRT for Pascal; install tensorrt 8.6"
        )
    slow_fp16 = cc in SLOW_FP16
    if slow_fp16 and precision == "fp16":
        warnings.append(
            "FP16 runs at 1/64 rate on GTX 10xx Pascal GPUs (sm_61): it will not be faster; use --precision int8"
        )
    if dla_core is not None:
        if dla_core < 0:
            raise MfssdError(f"--dla-core {dla_core}: DLA cores are numbered from 0")
        if precision == "fp32":
            raise MfssdError("DLA runs FP16 or INT8 only: use --precision fp16 (or int8) with --dla-core")
        reason = dla_unsupported(version)
        if reason:
            raise MfssdError(f"--dla-core: {reason}")
        if precision == "int8" and major == 8:
            # TensorRT 8.x developer guide, "Working with DLA" (NVIDIA developer blog "TensorRT 和 DLA",
            # developer.nvidia.com/zh-cn/blog/tensorrt-deep-learning-accelerator-cn): "DLA 不支持
            # Explicit Quantization" (DLA does not support explicit quantization).
            raise MfssdError(
                f"TensorRT {version} runs no Q/DQ (explicitly quantized) INT8 on the DLA: use --precision fp16 "
                "with --dla-core (DLA FP16), or --precision int8 without --dla-core (GPU INT8)"
            )
    flags: list[str] = []
    network_flags: list[str] = []
    fp32_post = False
    if major >= 11:
        source = precision  # strongly typed: the ONNX carries the precision; the flag is deprecated and ignored
        strongly_typed = True
    else:
        strongly_typed = False
        if major < 10:
            network_flags.append("EXPLICIT_BATCH")
        source = "int8" if precision == "int8" else "fp32"
        if precision == "fp16":
            flags.append("FP16")
        elif precision == "int8":
            flags.append("INT8")  # a Q/DQ network still needs it on 8.x/10.x
            if not slow_fp16:
                flags.append("FP16")  # layers left unquantized may run in FP16
        if "FP16" in flags:
            fp32_post = True
            flags.append("OBEY_PRECISION_CONSTRAINTS")  # else TensorRT may ignore the FP32 pins
    if dla_core is not None:
        flags.append("GPU_FALLBACK")
    return BuildPlan(
        source,
        major < 10,
        strongly_typed,
        tuple(flags),
        dla_core,
        tuple(warnings),
        tuple(network_flags),
        fp32_post,
        # static: "DLA does not support dynamic dimensions, so the profile's min, max, and opt values must be
        # equal" (docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/dla-layer-restrictions.html);
        # INetworkDefinition::addInput: "If run on DLA ... provided profile must have same minimum, optimum,
        # and maximum dimensions" (NVIDIA/TensorRT release/10.3 include/NvInfer.h).
        dla_core is not None,
    )


def _source_of(version: str, precision: str, dla_core: int | None, cc: tuple[int, int]) -> str | None:
    """The ONNX source plan_build picks for `precision`, or None where that precision cannot be built."""
    try:
        return plan_build(version, precision, dla_core=dla_core, compute_capability=cc).onnx_source
    except MfssdError:
        return None


@dataclass
class BuildRequest:
    onnx: dict[str, Path]  # precision source -> ONNX file ("fp32", "fp16", "int8")
    out: Path  # engines/NAME.engine
    precision: str = "fp16"
    batch: tuple[int, int, int] = (1, 8, 16)  # min, opt, max of the optimization profile
    workspace_gb: float = 2.0
    timing_cache: Path | None = None  # this file exactly
    dla_core: int | None = None
    extra_meta: dict[str, Any] = field(default_factory=dict)
    # Else a file in this folder keyed by TensorRT version and GPU (timing_cache_path).
    timing_cache_dir: Path | None = None
    from_onnx: bool = False  # the user gave this ONNX file (mfssd-export --trt --model NAME.onnx), no checkpoint


def gpu_info() -> tuple[str, tuple[int, int]]:
    """Name and compute capability of the current CUDA device: through torch where it has CUDA (the [trt]
    extra), else through NVIDIA's CUDA bindings (the [trt-lean] extra: a Jetson builds from the ONNX file
    without torch). Both read cudaDeviceProp, so an engine built with one is checked right by the other."""
    try:
        import torch

        have_torch = True
    except ImportError:
        have_torch = False
    if have_torch and torch.cuda.is_available():
        return torch.cuda.get_device_name(), torch.cuda.get_device_capability()
    from mfssd_deploy.runtime.backends.tensorrt_cuda import cuda_runtime, device_info

    try:
        cuda_runtime()
    except MissingExtraError as exc:
        if have_torch:  # torch without CUDA (PyPI's aarch64 wheel) and no bindings
            raise MfssdError("no CUDA GPU is visible to torch: build TensorRT engines on the GPU (or Jetson) that "
                             f"will run them; on a Jetson without NVIDIA's torch: {INSTALL}") from exc  # fmt: skip
        raise MissingExtraError(f"building engines needs torch or NVIDIA's CUDA bindings to identify the GPU: "
                                f"{INSTALL} (with PyTorch: {TRT_INSTALL})") from exc  # fmt: skip
    info = device_info(0)
    return info.name, info.capability


ONNX_METADATA_KEY = METADATA_KEY  # kept for callers of the old name; artifacts.METADATA_KEY is the one key


def timing_cache_path(folder: Path, version: str, gpu: tuple[str, tuple[int, int]]) -> Path:
    """The timing cache for one TensorRT version and GPU: a cache of another is refused by setTimingCache."""
    slug = re.sub(r"[^a-z0-9]+", "-", gpu[0].lower()).strip("-") or "gpu"
    return Path(folder) / f"timing.trt{version}.{slug}.sm{gpu[1][0]}{gpu[1][1]}.cache"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock on PATH.lock while the cache is read or merged and written, as Polygraphy does
    (NVIDIA/TensorRT release/10.3 tools/Polygraphy/polygraphy/util/util.py, class LockFile)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "wb") as f:
        try:
            import fcntl
        except ImportError:  # Windows: no lock (one build at a time there)
            yield
            return
        fcntl.lockf(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(f.fileno(), fcntl.LOCK_UN)


def _create_cache(config: Any, data: bytes) -> Any:
    """createTimingCache returns a pointer (None in Python) for a blob it cannot read."""
    try:
        return config.create_timing_cache(data)
    except (RuntimeError, TypeError, ValueError):
        return None


def _attach_timing_cache(config: Any, path: Path | None) -> None:
    """Read the cache under the lock; setTimingCache(cache, ignoreMismatch=false) "return[s] true if set
    successfully, false otherwise" and fails "if the CUDA device property in the provided cache is
    different" (release/10.3 include/NvInfer.h, IBuilderConfig::setTimingCache): then start empty."""
    data = b""
    if path is not None and path.is_file():
        with _file_lock(path):
            data = path.read_bytes()
    if data:
        cache = _create_cache(config, data)
        if cache is not None and config.set_timing_cache(cache, False):
            return
        log.warning("warning: %s is from another TensorRT version or GPU (or corrupt): starting an empty timing cache",
                    path)  # fmt: skip
    cache = _create_cache(config, b"")
    if cache is None or not config.set_timing_cache(cache, False):
        log.warning("warning: TensorRT refused an empty timing cache: building without one")


def _save_timing_cache(config: Any, path: Path) -> None:
    """Merge with the cache on disk (another build may have written it meanwhile) and write, as Polygraphy's
    EngineBytesFromNetwork does (release/10.3 tools/Polygraphy/polygraphy/backend/trt/loader.py: LockFile,
    create_timing_cache(load_file(path)), timing_cache.combine(prev_cache, ...), save). getTimingCache
    returns a pointer, None when no cache is attached (release/10.3 NvInfer.h). A failure here only warns:
    the engine is already written."""
    try:
        cache = config.get_timing_cache()
        if cache is None:
            log.warning("warning: TensorRT has no timing cache to save to %s", path)
            return
        with _file_lock(path):
            if path.is_file():
                prev = _create_cache(config, path.read_bytes())
                # combine: "The input cache must be generated by a TensorRT build of exact same version,
                # otherwise combine will be skipped and return false" (ITimingCache::combine, NvInfer.h).
                if prev is not None and not cache.combine(prev, False):
                    log.warning("warning: %s could not be merged (another TensorRT or GPU): replacing it", path)
            blob = cache.serialize()
            if blob is None:
                log.warning("warning: TensorRT could not serialize the timing cache: %s not updated", path)
                return
            with atomic_path(path) as tmp:
                tmp.write_bytes(bytes(blob))
    except (OSError, RuntimeError) as exc:
        log.warning("warning: timing cache %s not saved (%s); the engine was written", path, exc)


def _pin_postprocess(trt: Any, network: Any, config: Any, plan: BuildPlan) -> int:
    """FP32 (and, with DLA, the GPU) for the post-processing layers; returns how many layers were pinned.

    setOutputType only on floating-point outputs: "This method cannot be used to set the data type of the
    second output tensor of the TopK layer" and "the output type of all layers that are shape operations
    must be DataType::kINT32" (release/10.3 include/NvInfer.h, ILayer::setOutputType).
    """
    if not plan.fp32_postprocess and plan.dla_core is None:
        return 0
    floats = {trt.DataType.FLOAT, trt.DataType.HALF}
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if not str(layer.name).startswith(POSTPROCESS_PREFIX):
            continue
        pinned += 1
        if plan.dla_core is not None:  # DLA has no FP32; decode/TopK/NMS stay on the GPU
            config.set_device_type(layer, trt.DeviceType.GPU)
        if plan.fp32_postprocess:
            outs = [j for j in range(layer.num_outputs) if layer.get_output(j).dtype in floats]
            if outs:
                layer.precision = trt.DataType.FLOAT
                for j in outs:
                    layer.set_output_type(j, trt.DataType.FLOAT)
    return pinned


def build_engine(req: BuildRequest, gpu: tuple[str, tuple[int, int]] | None = None) -> dict[str, Any]:
    """Build, serialize and write NAME.engine + NAME.engine.json; returns the engine metadata.

    `import tensorrt` here is type-checked against tensorrt-stubs; contract tests put a recording
    fake in sys.modules["tensorrt"].
    """
    import onnx

    from mfssd_deploy.exporters.trt_lint import lint

    import_tensorrt()
    import tensorrt as trt

    gpu_name, cc = gpu or gpu_info()
    version = str(trt.__version__)
    plan = plan_build(version, req.precision, dla_core=req.dla_core, compute_capability=cc)
    src = req.onnx.get(plan.onnx_source)
    if src is None:
        if req.from_onnx and len(req.onnx) == 1:  # mfssd-export --trt --model NAME.onnx: what this file builds
            ((have, path),) = req.onnx.items()
            can = [p for p in PRECISIONS if _source_of(version, p, req.dla_core, cc) == have]
            raise MfssdError(
                f"{path.name} is the {have} ONNX; TensorRT {version} builds {req.precision} engines from the "
                f"{plan.onnx_source} ONNX: use --precision {' or '.join(can) or '(none)'} with this file"
            )
        hint = {"fp16": "--fp16", "int8": "--int8 --calib DIR"}.get(plan.onnx_source, "")
        raise MfssdError(
            f"TensorRT {version} builds {req.precision} from the {plan.onnx_source} ONNX: export it ({hint})"
        )
    b_min, b_opt, b_max = req.batch
    if not 1 <= b_min <= b_opt <= b_max:
        raise MfssdError(f"--batch {b_min},{b_opt},{b_max}: need 1 <= MIN <= OPT <= MAX")
    if plan.static_batch and (b_min, b_max) != (b_opt, b_opt):
        log.warning(
            "warning: DLA has no dynamic shapes: building batch %d only (profile %d,%d,%d; choose it with "
            "--batch-profile B,B,B); smaller batches are padded at run time",
            *(b_opt,) * 4,
        )
        b_min = b_max = b_opt
    for w in plan.warnings:
        log.warning("warning: %s", w)
    model = onnx.load(src)
    problems = lint(model, version)
    if problems:
        raise MfssdError(
            f"{src.name} will not parse in TensorRT {version}: {problems[0]} ({len(problems)} problems; "
            f"see mfssd-export --check-trt {version})"
        )
    meta = read_meta(src)
    from mfssd_deploy.config import input_wh_of

    width, height = input_wh_of(meta["config"]["input_size"])  # a side, or (W, H) at native resolution

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    if plan.dla_core is not None:
        cores = int(builder.num_DLA_cores)  # IBuilder::getNbDLACores
        if plan.dla_core >= cores:
            have = f"{cores} DLA core{'s' if cores != 1 else ''}" + (f" (0..{cores - 1})" if cores else "")
            raise MfssdError(
                f"--dla-core {plan.dla_core}: this device has {have}; DLA is on Jetson Xavier, Orin NX and AGX Orin"
            )
    net_flags = 0
    for name in plan.network_flags:
        net_flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
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
    pinned = _pin_postprocess(trt, network, config, plan)
    profile = builder.create_optimization_profile()
    shape = lambda b: (b, 3, height, width)  # noqa: E731
    profile.set_shape(INPUT, trt.Dims4(*shape(b_min)), trt.Dims4(*shape(b_opt)), trt.Dims4(*shape(b_max)))
    config.add_optimization_profile(profile)
    cache_path = req.timing_cache
    if cache_path is None and req.timing_cache_dir is not None:
        cache_path = timing_cache_path(req.timing_cache_dir, version, (gpu_name, cc))
    _attach_timing_cache(config, cache_path)

    t0 = time.time()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise MfssdError(f"TensorRT {version} failed to build {req.out.name} (see the TensorRT log above)")
    seconds = time.time() - t0
    with atomic_path(req.out) as tmp:
        tmp.write_bytes(bytes(serialized))
    if cache_path is not None:
        _save_timing_cache(config, cache_path)
    engine_meta = {
        **meta,
        "precision": req.precision,
        "onnx": str(src),
        "onnx_sha256": sha256_file(src),
        "tensorrt_version": version,
        "gpu_name": gpu_name,
        "compute_capability": list(cc),
        "profiles": {INPUT: {"min": list(shape(b_min)), "opt": list(shape(b_opt)), "max": list(shape(b_max))}},
        "build_seconds": seconds,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "plan": asdict(plan),
        "fp32_postprocess_layers": pinned if plan.fp32_postprocess else 0,
        "timing_cache": os.fspath(cache_path) if cache_path is not None else None,
        "workspace_gb": req.workspace_gb,
        **req.extra_meta,
    }
    write_json(sidecar_path(req.out), engine_meta)
    return engine_meta
