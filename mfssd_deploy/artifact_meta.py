"""The `mfssd` metadata every artifact carries (ONNX property, engine sidecar JSON, Triton parameter).

One validating parser for all readers: a file whose metadata lacks a key, names an unknown layout or
precision, or holds a config that does not parse is refused in one line naming the file, before any
inference (a half-valid config would otherwise surface as a KeyError deep in post-processing).
"""

from __future__ import annotations

import json
from typing import Any, Literal, get_args

from mfssd_deploy.config import ModelConfig
from mfssd_deploy.errors import MfssdError

Layout = Literal["raw", "end2end"]
Precision = Literal["fp32", "int8-qdq", "int8-qdq-u8", "fp16"]  # of an ONNX file
EnginePrecision = Literal["fp32", "fp16", "int8"]  # of a TensorRT engine (builder flags, not a graph)
LAYOUTS: tuple[str, ...] = get_args(Layout)
PRECISIONS: tuple[str, ...] = get_args(Precision)
ENGINE_PRECISIONS: tuple[str, ...] = get_args(EnginePrecision)
REQUIRED = ("layout", "config")


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
