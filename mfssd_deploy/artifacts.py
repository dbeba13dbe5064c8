"""The artifact contract, in one place: kinds, file names, tensor names and the `mfssd` metadata.

Every exported file is one of KINDS (the way ultralytics' export_formats() is one table for every
format): the exporter names its files from it, the bench chooses its rows from it, the engine
builder maps an engine precision to its ONNX source through it, and Triton writes its tensors from
it. The metadata every artifact carries (ONNX property, engine sidecar JSON, Triton parameter) is
read by one validating parser, so a file whose metadata lacks a key, names an unknown layout or
precision, or holds a config that does not parse is refused in one line naming the file, before
any inference.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from mfssd_deploy.config import ModelConfig
from mfssd_deploy.errors import MfssdError

Layout = Literal["raw", "end2end"]
EnginePrecision = Literal["fp32", "fp16", "int8"]  # of a TensorRT engine (builder flags, not a graph)
LAYOUTS: tuple[str, ...] = get_args(Layout)
ENGINE_PRECISIONS: tuple[str, ...] = get_args(EnginePrecision)


@dataclass(frozen=True)
class OnnxPrecision:
    """One precision an ONNX graph is exported in: how it is named, asked for, made, and where it runs.
    The exporter, mfssd-export's options, the bench's formats, the file names and the CPU runtime rule all
    read this table, so a new precision is an entry here and its builder."""

    name: str  # the metadata's "precision": "int8-qdq"
    short: str  # the bench formats' prefix: "int8" -> "int8-e2e", "int8-raw"
    suffix: str  # the file-name part: NAME.int8.end2end.onnx
    field: str  # the ExportRequest switch that asks for it; mfssd-export's flag is --FIELD (dashes)
    help: str  # mfssd-export --help ("" for fp32: on by default, --no-fp32 skips it)
    builder: str  # "MODULE:FUNCTION" in mfssd_deploy.exporters: (raw FP32 graph, cfg, request, name, status) -> graph;
    # "" for the raw FP32 graph itself
    gpu: bool = True  # whether GPU runtimes (TensorRT, ONNX Runtime's CUDA/TensorRT EPs) take it
    requires: str = ""  # the field of a precision that must be asked for too (u8 INT8 is a variant of --int8)
    calibrated: bool = False  # needs --calib images; its metadata records the calibration
    cpu_runtime: str = "onnxruntime"  # the faster CPU runtime where OpenVINO is installed (benchmarks/int8_placement)
    bench: bool = True  # mfssd-bench exports and times its end2end file (FP16 ONNX: TensorRT 11's source only)


# Which runtime runs an .onnx on a CPU (cpu_runtime), from one interleaved run here (2 cores, demo model, median
# ms at batch 1 / 8, ONNX Runtime vs OpenVINO f32, benchmarks/int8_placement): the symmetric INT8 file 35.4 / 272
# vs 5.0 / 31 (OpenVINO 7-9x faster; ONNX Runtime fuses only Q -> Conv -> Q); FP32 17.6 / 136 vs 17.8 / 137 and
# FP16 files (ONNX Runtime as fast or faster). The uint8-activation file is faster still in OpenVINO: full-size
# pruned MFSSD-BN 23.0 / 25.7 vs 62.9 / 80.5 images/s at batch 1 / 8 (benchmarks/fps).
ONNX_PRECISIONS: dict[str, OnnxPrecision] = {
    p.name: p
    for p in (
        OnnxPrecision("fp32", "fp32", "", "fp32", "", ""),
        OnnxPrecision("int8-qdq", "int8", ".int8", "int8", "also write the INT8 Q/DQ model(s)",
                      "quantize:build_s8", calibrated=True, cpu_runtime="openvino"),
        OnnxPrecision("int8-qdq-u8", "int8u8", ".int8u8", "int8_cpu",
                      "with --int8, also the CPU-tuned INT8 model (.int8u8: uint8 activations, ONNX Runtime's fast "
                      "path on x86, ~1.5x the speed there; TensorRT cannot load it)",
                      "quantize:build_u8", gpu=False, requires="int8", calibrated=True, cpu_runtime="openvino"),
        OnnxPrecision("fp16", "fp16", ".fp16", "fp16", "also write the FP16 ONNX (TensorRT 11 strongly typed)",
                      "fp16:build_fp16", bench=False),
    )
}  # fmt: skip
PRECISIONS: tuple[str, ...] = tuple(ONNX_PRECISIONS)

# Tensor names: one input, and the outputs of each layout in graph order (end2end: EfficientNMS's).
INPUT = "images"
OUTPUTS: dict[str, tuple[str, ...]] = {
    "raw": ("loc", "scores"),
    "end2end": ("num_dets", "det_boxes", "det_scores", "det_classes"),
}
# Element types of the outputs (Triton's names; numpy's are float32 and int32).
OUTPUT_TYPES: dict[str, str] = {"loc": "FP32", "scores": "FP32", "num_dets": "INT32", "det_boxes": "FP32",
                                "det_scores": "FP32", "det_classes": "INT32"}  # fmt: skip

LAYOUT_SUFFIX: dict[str, str] = {"raw": "", "end2end": ".end2end"}
# The ONNX precision an engine precision is built from (FP16 engines: from FP32 on TensorRT 8-10 and
# from the FP16 file on 11, which tensorrt_build.plan_build decides).
ENGINE_SOURCE: dict[str, str] = {"fp32": "fp32", "int8": "int8-qdq", "fp16": "fp16"}


@dataclass(frozen=True)
class ArtifactKind:
    """One row of the table: a bench format name, the file it is, and whether GPU runtimes take it. Which backend
    loads it is the backend registry's (runtime.backends.REGISTRY, by suffix, and its CPU rule by precision)."""

    name: str  # e.g. "int8-e2e": the bench's --formats vocabulary
    suffix: str  # after the model name: ".int8.end2end.onnx"
    layout: Layout
    precision: str  # a Precision for ONNX rows, an EnginePrecision for engine rows, "fp32" for .pt
    gpu: bool = True  # whether GPU runtimes take it, TensorRT's builder included (the u8 INT8 file is CPU-only)


def _onnx_kind(precision: str, layout: str) -> ArtifactKind:
    p = ONNX_PRECISIONS[precision]
    return ArtifactKind(
        name=f"{p.short}-{'e2e' if layout == 'end2end' else 'raw'}",
        suffix=f"{p.suffix}{LAYOUT_SUFFIX[layout]}.onnx",
        layout=layout,  # type: ignore[arg-type]
        precision=precision,
        gpu=p.gpu,
    )


KINDS: dict[str, ArtifactKind] = {
    k.name: k
    for k in (
        ArtifactKind("eager", ".pt", "raw", "fp32"),
        *(_onnx_kind(p, lay) for p in PRECISIONS for lay in ("raw", "end2end")),
        ArtifactKind("trt-int8-e2e", ".end2end.int8.engine", "end2end", "int8"),
        ArtifactKind("trt-fp16-e2e", ".end2end.fp16.engine", "end2end", "fp16"),
    )
}
ENGINE_KINDS: tuple[str, ...] = tuple(k.name for k in KINDS.values() if k.suffix.endswith(".engine"))


def onnx_kind(precision: str, layout: str) -> ArtifactKind:
    """The table row of an ONNX file with this metadata."""
    if precision not in PRECISIONS or layout not in LAYOUTS:
        raise MfssdError(f"no artifact kind for precision {precision!r}, layout {layout!r}")
    return _onnx_kind(precision, layout)


def onnx_name(stem: str, precision: str, layout: str) -> str:
    return stem + onnx_kind(precision, layout).suffix


def engine_name(stem: str, layout: str, precision: str) -> str:
    """NAME.LAYOUT.PRECISION.engine: one engine per exported layout and engine precision."""
    if precision not in ENGINE_PRECISIONS:
        raise MfssdError(f"--precision {precision!r}: choose one of {', '.join(ENGINE_PRECISIONS)}")
    return f"{stem}.{layout}.{precision}.engine"


# ---------------------------------------------------------------- metadata

REQUIRED = ("layout", "config")
ONNX_FORMAT = "mfssd-onnx/1"


@dataclass(frozen=True)
class ArtifactMeta:
    """The `mfssd` metadata, typed: what an artifact is (layout, precision), the model it runs (config),
    where it came from (source checkpoint sha256, package version), and everything else a producer adds
    (opset, calibration, engine facts: TensorRT version, GPU, profiles) in `extra`, kept verbatim.

    `parse` is the one validating reader and `to_dict` the one writer: every artifact's JSON goes through
    them (ONNX property, engine sidecar, Triton parameter)."""

    layout: str
    precision: str
    config: ModelConfig
    source_sha256: str | None = None
    package_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(
        cls,
        raw: str | dict[str, Any],
        where: str,
        fix: str = "re-export it with mfssd-export",
        precisions: tuple[str, ...] = PRECISIONS + ENGINE_PRECISIONS,
    ) -> ArtifactMeta:
        meta = parse_meta(raw, where, fix, precisions)
        known = {"layout", "precision", "config", "source_sha256", "package_version"}
        return cls(
            layout=meta["layout"],
            precision=meta.get("precision", "fp32"),
            config=config_of(meta, where, fix),
            source_sha256=meta.get("source_sha256"),
            package_version=meta.get("package_version"),
            extra={k: v for k, v in meta.items() if k not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": ONNX_FORMAT, **self.extra}
        out.update(config=self.config.to_dict(), layout=self.layout, precision=self.precision,
                   source_sha256=self.source_sha256, package_version=self.package_version)  # fmt: skip
        return out


def parse_meta(
    raw: str | dict[str, Any],
    where: str,
    fix: str = "re-export it with mfssd-export",
    precisions: tuple[str, ...] = PRECISIONS + ENGINE_PRECISIONS,
) -> dict[str, Any]:
    """The metadata as a dict, validated; `where` names the file (or served model) in the error."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise MfssdError(f"{where}: its 'mfssd' metadata is not valid JSON (corrupt file?): {fix}") from None
    if not isinstance(raw, dict):
        raise MfssdError(f"{where}: its 'mfssd' metadata is not a JSON object: {fix}")
    meta = dict(raw)
    for key in REQUIRED:
        if key not in meta:
            raise MfssdError(f"{where}: its 'mfssd' metadata lacks {key!r}: {fix}")
    if meta["layout"] not in LAYOUTS:
        raise MfssdError(f"{where}: layout {meta['layout']!r} is not one of {', '.join(LAYOUTS)}: {fix}")
    if meta.get("precision", "fp32") not in precisions:
        raise MfssdError(f"{where}: precision {meta['precision']!r} is not one of {', '.join(precisions)}: {fix}")
    config_of(meta, where, fix)
    return meta


def config_of(meta: dict[str, Any], where: str, fix: str = "re-export it with mfssd-export") -> ModelConfig:
    try:
        return ModelConfig.from_dict(meta["config"])
    except MfssdError as exc:
        raise MfssdError(f"{where}: {exc}: {fix}") from None


# ---------------------------------------------------------------- what is this file

METADATA_KEY = "mfssd"  # the key of the metadata: ONNX metadata_props, OpenVINO rt_info["framework"]
FILE_KINDS: dict[str, str] = {".pt": "checkpoint", ".pth": "checkpoint", ".onnx": "onnx", ".engine": "engine",
                              ".plan": "engine", ".xml": "openvino"}  # fmt: skip


def kind_of(path: str | os.PathLike[str]) -> str:
    """'checkpoint', 'onnx', 'engine' or 'openvino' (an IR's .xml), by suffix; anything else is refused."""
    kind = FILE_KINDS.get(Path(path).suffix.lower())
    if kind is None:
        raise MfssdError(f"{path}: not a model file this package knows ({', '.join(sorted(FILE_KINDS))})")
    return kind


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated `mfssd` metadata of any artifact, the one reader for every kind: an ONNX file's
    property (read from the file's protobuf fields, without onnx, an inference session or torch), an
    engine's sidecar NAME.engine.json, an OpenVINO IR's rt_info, a checkpoint's config (needs torch)."""
    p = Path(path)
    kind = kind_of(p)
    if not p.is_file():
        raise MfssdError(f"model not found: {p}")
    if kind == "checkpoint":
        from mfssd_deploy.checkpoint import read_checkpoint

        ckpt = read_checkpoint(p)
        return parse_meta({"layout": "raw", "precision": "fp32", "config": ckpt["config"]}, p.name)
    if kind == "engine":
        return _engine_sidecar(p)
    raw = _onnx_property(p) if kind == "onnx" else _openvino_property(p)
    if raw is None:
        raise MfssdError(f"{p} has no 'mfssd' metadata (not exported by mfssd-export): export it with mfssd-export")
    return parse_meta(raw, str(p))


def proto_meta(model: Any, where: str) -> dict[str, Any]:
    """The metadata of an ONNX graph already in memory (an onnx.ModelProto; duck-typed, no onnx import)."""
    raw = next((p.value for p in model.metadata_props if p.key == METADATA_KEY), None)
    if raw is None:
        raise MfssdError(f"{where} has no 'mfssd' metadata: export it with mfssd-export")
    return parse_meta(raw, where)


def sidecar_path(engine: str | os.PathLike[str]) -> Path:
    """NAME.engine.json: an engine's metadata lives beside it (an engine file holds no free-form fields)."""
    p = Path(engine)
    return p.with_name(p.name + ".json")


def _engine_sidecar(path: Path) -> dict[str, Any]:
    fix = "rebuild the engine with mfssd-export --trt"
    side = sidecar_path(path)
    if not side.is_file():
        raise MfssdError(f"{path.name} has no metadata file {side.name}: {fix}")
    try:
        meta = json.loads(side.read_text())
    except ValueError:
        raise MfssdError(f"{side} is not valid JSON (corrupt?): {fix}") from None
    for key in ("tensorrt_version", "gpu_name", "compute_capability", "config", "layout"):
        if not isinstance(meta, dict) or key not in meta:
            raise MfssdError(f"{side.name} lacks {key!r}: {fix}")
    return parse_meta(meta, side.name, fix, ENGINE_PRECISIONS)


def _varint(f: Any) -> int | None:
    shift = value = 0
    while True:
        b = f.read(1)
        if not b:
            return None
        value |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return value
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _onnx_property(path: Path) -> str | None:
    """ModelProto.metadata_props (field 14: StringStringEntryProto key=1, value=2) read off the wire, the
    graph and its weights skipped by seeking: the lean install has no onnx package, and building an
    inference session just to read a string costs seconds and memory."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            while (key := _varint(f)) is not None:
                field_no, wire = key >> 3, key & 7
                if wire == 0:
                    _varint(f)
                elif wire in (1, 5):
                    f.seek(8 if wire == 1 else 4, 1)
                elif wire == 2:
                    n = _varint(f)
                    if n is None:
                        raise ValueError("truncated")
                    if field_no != 14:
                        if f.seek(n, 1) > size:
                            raise ValueError("truncated")
                        continue
                    entry, k, v = io.BytesIO(f.read(n)), None, None
                    while (ek := _varint(entry)) is not None:
                        m = _varint(entry) or 0
                        data = entry.read(m)
                        k, v = (data.decode(), v) if ek >> 3 == 1 else (k, data.decode() if ek >> 3 == 2 else v)
                    if k == METADATA_KEY:
                        return v
                else:
                    raise ValueError(f"wire type {wire}")
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise MfssdError(
            f"{path.name} is not a readable ONNX file ({exc}; damaged or truncated?): re-export it"
        ) from None
    return None


def _openvino_property(path: Path) -> str | None:
    """rt_info/framework/mfssd of an OpenVINO IR .xml (OpenVINO's ONNX frontend keeps the property there)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        raise MfssdError(f"{path.name}: not a readable OpenVINO IR (damaged?): re-convert it") from None
    node = root.find(f"./rt_info/framework/{METADATA_KEY}")
    return None if node is None else node.get("value")
