"""From exported ONNX files to a deployment: TensorRT parser checks, engines, a Triton model repository.

Each step reads the export report of `run_export` (the files it wrote, their layout and precision), so
the Python API builds everything `mfssd-export` builds, and the command only parses its arguments.
Nothing here imports onnx, torch or TensorRT at module level: a step that needs one imports it, and a
missing one fails that step after the ONNX files are already written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mfssd_deploy.artifacts import onnx_kind, read_meta

log = logging.getLogger("mfssd_deploy.export")
Echo = Callable[[str], None]  # where the steps' one-line reports go (the CLI: print)


@dataclass(frozen=True)
class EngineOptions:
    """How TensorRT engines are built (mfssd-export --trt; the defaults are the command's)."""

    precision: str = "fp16"  # fp32 | fp16 | int8 (int8 builds from the Q/DQ ONNX)
    batch: tuple[int, int, int] = (1, 8, 16)  # MIN, OPT, MAX of the optimization profile of the batch axis
    workspace_gb: float = 2.0
    timing_cache: Path | None = None  # read and updated; None: ENGINES_DIR/timing.trtVERSION.GPU.smXY.cache
    dla_core: int | None = None  # a Jetson DLA core, GPU fallback on
    engines_dir: Path = Path("engines")


@dataclass(frozen=True)
class TritonRepoOptions:
    """A Triton model repository for the export (mfssd-export --triton DIR; the defaults are the command's)."""

    repo: str | Path  # as given: the closing line names it so
    device: str = "gpu"  # instance group kind: gpu | cpu
    instances: int = 1  # model instances per device
    max_queue_delay_us: int = 2000  # dynamic batching: how long a request may wait for a batch
    trt_accelerator: bool = False  # ONNX models on GPU: ONNX Runtime's TensorRT accelerator
    batch: tuple[int, int, int] = (1, 8, 16)  # the export's profile: max_batch_size MAX, preferred {OPT, MAX}
    backend: str = "onnxruntime"  # the repository kind: serving.repository.REPOSITORY_KINDS


def check_artifacts(artifacts: list[dict[str, Any]], version: str) -> dict[str, dict[str, str]]:
    """For each artifact and TensorRT line ("all" or a version): "ok" or the first problem (and how many more)."""
    import onnx

    from mfssd_deploy.exporters.trt_lint import lint, tables, version_line

    versions = list(tables()) if version == "all" else [version_line(version)]
    out: dict[str, dict[str, str]] = {}
    for a in artifacts:
        if not onnx_kind(a["precision"], a["layout"]).gpu:
            out[Path(a["path"]).name] = {
                v: "skipped: CPU-only INT8 (uint8 activations), not for TensorRT" for v in versions
            }
            continue
        model = onnx.load(a["path"])
        row = {}
        for v in versions:
            problems = lint(model, v)
            row[v] = "ok" if not problems else f"{problems[0]} (+{len(problems) - 1} more)"
        out[Path(a["path"]).name] = row
    return out


def format_check(check: dict[str, dict[str, str]]) -> str:
    return "\n".join(
        f"TensorRT {v} parser check, {name}: {verdict}" for name, row in check.items() for v, verdict in row.items()
    )


def check_failed(check: dict[str, dict[str, str]] | None) -> bool:
    """Whether any file would not parse (what makes mfssd-export --check-trt exit 1)."""
    return any(v != "ok" and not v.startswith("skipped") for row in (check or {}).values() for v in row.values())


def onnx_report(path: Path, name: str | None = None) -> dict[str, Any]:
    """The report the steps below read, for one ONNX file exported earlier (mfssd-export --trt --model
    NAME.int8.end2end.onnx, on the board that will run the engine): layout and precision from the file's own
    `mfssd` metadata; no checkpoint, no torch. NAME is the file name less its kind's suffix, so the engine is
    named as a build from the checkpoint names it (engines/NAME.end2end.int8.engine)."""
    from mfssd_deploy.errors import require
    from mfssd_deploy.runtime.backends.tensorrt_cuda import LEAN_EXTRA

    onnx = require("onnx", LEAN_EXTRA, "building a TensorRT engine from an ONNX file (its parser check)")
    if not path.is_file():
        from mfssd_deploy.demo_assets import model_not_found

        raise model_not_found(path)
    meta = read_meta(path)  # a damaged file is refused here, in one line
    del onnx  # required above: the engine build's parser check needs it
    layout, precision = str(meta["layout"]), str(meta.get("precision", "fp32"))
    suffix = onnx_kind(precision, layout).suffix
    stem = path.name[: -len(suffix)] if path.name.endswith(suffix) and len(path.name) > len(suffix) else path.stem
    artifact = {"path": str(path), "layout": layout, "precision": precision}
    return {"model": str(path), "name": name or stem, "artifacts": [artifact], "from_onnx": True}


def check_tensorrt_source(report: dict[str, Any]) -> None:
    """Refuse, before any build, an ONNX file TensorRT cannot load (the CPU-only INT8 of uint8 activations)."""
    from mfssd_deploy.errors import MfssdError

    for a in report["artifacts"]:
        if not onnx_kind(a["precision"], a["layout"]).gpu:
            raise MfssdError(f"{Path(a['path']).name} is the CPU-only INT8 model (uint8 activations), which TensorRT "
                             "cannot load: build the engine from NAME.int8.end2end.onnx (symmetric INT8)")  # fmt: skip


def engine_line(path: Path, meta: dict[str, Any]) -> str:
    return (
        f"engine {path} ({meta['precision']}, TensorRT {meta['tensorrt_version']}, {meta['gpu_name']}, "
        f"built in {meta['build_seconds']:.0f} s)"
    )


def build_engines(report: dict[str, Any], opts: EngineOptions, echo: Echo | None = None) -> list[dict[str, Any]]:
    """One engine per exported layout at `opts.precision`, from the ONNX files the report lists (already
    written: a missing TensorRT fails here and leaves them). Each engine's line goes to `echo` as it is built."""
    from mfssd_deploy.exporters.tensorrt_build import BuildRequest, build_engine
    from mfssd_deploy.runtime.engine_meta import import_tensorrt

    import_tensorrt()
    from mfssd_deploy.artifacts import ENGINE_SOURCE, engine_name

    source_key = {onnx_precision: engine for engine, onnx_precision in ENGINE_SOURCE.items()}
    built = []
    for layout in sorted({a["layout"] for a in report["artifacts"]}):
        onnx_files = {
            source_key[a["precision"]]: Path(a["path"])
            for a in report["artifacts"]
            if a["layout"] == layout and a["precision"] in source_key  # not the CPU-only u8 INT8 variant
        }
        out = opts.engines_dir / engine_name(report["name"], layout, opts.precision)
        request = BuildRequest(
            onnx=onnx_files,
            out=out,
            precision=opts.precision,
            batch=opts.batch,
            workspace_gb=opts.workspace_gb,
            timing_cache=opts.timing_cache,
            timing_cache_dir=opts.engines_dir,
            dla_core=opts.dla_core,
            from_onnx=bool(report.get("from_onnx")),
        )
        meta = build_engine(request)
        (echo or log.info)(engine_line(out, meta))
        built.append({"path": str(out), **{k: meta[k] for k in ("precision", "tensorrt_version", "gpu_name")}})
    return built


def write_triton(report: dict[str, Any], opts: TritonRepoOptions) -> list[str]:
    """One Triton model per exported ONNX file (and per built engine in report["engines"]); returns the names."""
    from mfssd_deploy.serving.repository import TritonOptions, write_repository

    batch = opts.batch
    topts = TritonOptions(
        kind=opts.device,
        instances=opts.instances,
        max_batch=batch[2],
        preferred=tuple(sorted({batch[1], batch[2]})),
        max_queue_delay_us=opts.max_queue_delay_us,
        trt_accelerator=opts.trt_accelerator,
    )
    onnx_files = [Path(a["path"]) for a in report["artifacts"]]
    engines = [Path(e["path"]) for e in report.get("engines", [])]
    return write_repository(Path(opts.repo), onnx_files, engines, topts, opts.backend)


def triton_line(opts: TritonRepoOptions, names: list[str]) -> str:
    return (
        f"Triton model repository: {opts.repo} ({', '.join(names)}); "
        f"serve with: tritonserver --model-repository={Path(opts.repo).resolve()}"
    )


def deploy(
    report: dict[str, Any],
    *,
    check_trt: str | None = None,
    engines: EngineOptions | None = None,
    triton: TritonRepoOptions | None = None,
    echo: Echo | None = None,
) -> dict[str, Any]:
    """The steps after the ONNX export, in order: parser check, engines, Triton repository (which serves
    the engines too). Each step's result lands in `report` ("trt_check", "engines", "triton") as soon as it
    is done, so a later step that fails leaves the earlier results in it; returns `report`."""
    say = echo or log.info
    if check_trt:
        report["trt_check"] = check_artifacts(report["artifacts"], check_trt)
        say(format_check(report["trt_check"]))
    if engines is not None:
        report["engines"] = build_engines(report, engines, say)
    if triton is not None:
        report["triton"] = write_triton(report, triton)
        say(triton_line(triton, report["triton"]))
    return report
