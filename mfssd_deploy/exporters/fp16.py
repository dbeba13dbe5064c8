"""FP16 ONNX (FP16 weights and compute, FP32 inputs/outputs) for TensorRT 11's strongly typed builds."""

from __future__ import annotations

import warnings
from typing import Any

import onnx

from mfssd_deploy.errors import require


def to_fp16(raw_fp32: onnx.ModelProto) -> onnx.ModelProto:
    """Convert the raw model; the end2end decode + NMS is appended afterwards and stays FP32."""
    f16 = require("onnxconverter_common.float16", "export", "FP16 export")
    src = onnx.ModelProto()
    src.CopyFrom(raw_fp32)
    # Stale FP32 value_info (from simplification) would contradict the Casts the converter inserts
    # around the ops it keeps in FP32 (Resize): drop it and let the converter infer shapes again.
    del src.graph.value_info[:]
    # keep_io_types: `images` stays float32 and `loc`/`scores` come back as float32 (Cast nodes).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one warning per tiny weight truncated to FP16's range
        out: onnx.ModelProto = f16.convert_float_to_float16(src, keep_io_types=True)
    return out


def build_fp16(raw: onnx.ModelProto, cfg: Any, req: Any, name: str, status: dict[str, Any]) -> onnx.ModelProto:
    """--fp16, as artifacts.ONNX_PRECISIONS calls its builders."""
    return to_fp16(raw)
