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

import json
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from mfssd_deploy.config import ModelConfig
from mfssd_deploy.errors import MfssdError

Layout = Literal["raw", "end2end"]
Precision = Literal["fp32", "int8-qdq", "int8-qdq-u8", "fp16"]  # of an ONNX graph
EnginePrecision = Literal["fp32", "fp16", "int8"]  # of a TensorRT engine (builder flags, not a graph)
LAYOUTS: tuple[str, ...] = get_args(Layout)
PRECISIONS: tuple[str, ...] = get_args(Precision)
ENGINE_PRECISIONS: tuple[str, ...] = get_args(EnginePrecision)

# Tensor names: one input, and the outputs of each layout in graph order (end2end: EfficientNMS's).
INPUT = "images"
OUTPUTS: dict[str, tuple[str, ...]] = {
    "raw": ("loc", "scores"),
    "end2end": ("num_dets", "det_boxes", "det_scores", "det_classes"),
}
# Element types of the outputs (Triton's names; numpy's are float32 and int32).
OUTPUT_TYPES: dict[str, str] = {"loc": "FP32", "scores": "FP32", "num_dets": "INT32", "det_boxes": "FP32",
                                "det_scores": "FP32", "det_classes": "INT32"}  # fmt: skip

# The file-name part of each ONNX precision; "int8-qdq-u8" is the CPU-only variant (uint8 activations).
PRECISION_SUFFIX: dict[str, str] = {"fp32": "", "int8-qdq": ".int8", "int8-qdq-u8": ".int8u8", "fp16": ".fp16"}
LAYOUT_SUFFIX: dict[str, str] = {"raw": "", "end2end": ".end2end"}
# The ONNX precision an engine precision is built from (FP16 engines: from FP32 on TensorRT 8-10 and
# from the FP16 file on 11, which tensorrt_build.plan_build decides).
ENGINE_SOURCE: dict[str, str] = {"fp32": "fp32", "int8": "int8-qdq", "fp16": "fp16"}


@dataclass(frozen=True)
class ArtifactKind:
    """One row of the table: a bench format name, the file it is, and which runtimes take it."""

    name: str  # e.g. "int8-e2e": the bench's --formats vocabulary
    suffix: str  # after the model name: ".int8.end2end.onnx"
    layout: Layout
    precision: str  # a Precision for ONNX rows, an EnginePrecision for engine rows, "fp32" for .pt
    runtimes: tuple[str, ...]  # backends that load it
    gpu: bool = True  # whether a GPU runtime takes it (the u8 INT8 file is CPU-only)


def _onnx_kind(precision: str, layout: str) -> ArtifactKind:
    short = {"fp32": "fp32", "int8-qdq": "int8", "int8-qdq-u8": "int8u8", "fp16": "fp16"}[precision]
    return ArtifactKind(
        name=f"{short}-{'e2e' if layout == 'end2end' else 'raw'}",
        suffix=f"{PRECISION_SUFFIX[precision]}{LAYOUT_SUFFIX[layout]}.onnx",
        layout=layout,  # type: ignore[arg-type]
        precision=precision,
        runtimes=("onnxruntime",) if precision == "int8-qdq-u8" else ("onnxruntime", "tensorrt"),
        gpu=precision != "int8-qdq-u8",
    )


KINDS: dict[str, ArtifactKind] = {
    k.name: k
    for k in (
        ArtifactKind("eager", ".pt", "raw", "fp32", ("torch",)),
        *(_onnx_kind(p, lay) for p in PRECISIONS for lay in ("raw", "end2end")),
        ArtifactKind("trt-int8-e2e", ".end2end.int8.engine", "end2end", "int8", ("tensorrt",)),
        ArtifactKind("trt-fp16-e2e", ".end2end.fp16.engine", "end2end", "fp16", ("tensorrt",)),
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
