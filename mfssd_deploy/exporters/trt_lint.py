"""Will this ONNX parse in TensorRT X? A static check, runnable without a GPU or TensorRT.

Checks: operator support per TensorRT minor line (tables in trt_onnx_ops.json, the source of each
named there), opset range, Q/DQ form (zero points 0, per-channel weight scales on axis 0, per-tensor
activation scales), Resize / NonMaxSuppression / TopK attributes, the inputs each line's parser needs
as constants (Slice / Squeeze / Unsqueeze / Reduce* axes and more, per line: `constant_inputs`), and
that only the batch axis of the inputs is dynamic.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from mfssd_deploy.errors import MfssdError

TABLES = Path(__file__).with_name("trt_onnx_ops.json")
RESIZE_COORD_MODES = {
    "half_pixel",
    "pytorch_half_pixel",
    "tf_half_pixel_for_nn",
    "asymmetric",
    "align_corners",
}
RESIZE_MODES = {"nearest", "linear"}
TOPK_MAX = 3840  # TensorRT: K < 3840


@dataclass(frozen=True)
class Finding:
    line: str
    node: str
    message: str

    def __str__(self) -> str:
        return f"TensorRT {self.line}: {self.node}: {self.message}"


@functools.lru_cache(maxsize=1)
def tables() -> dict[str, Any]:
    """Line -> {"ops", "opset", "constant_inputs", "source"}, oldest first; a line given as `base` + `add`
    (no GA table found for it) is resolved to the base line's operators plus the added ones."""
    raw = dict(json.loads(TABLES.read_text())["lines"])
    out: dict[str, Any] = {}
    for line, t in raw.items():
        ops = set(t["ops"]) if "ops" in t else set(out[t["base"]]["ops"]) | set(t["add"])
        out[line] = {**t, "ops": sorted(ops)}
    return out


def _key(line: str) -> tuple[int, int]:
    major, minor = line.split(".")
    return int(major), int(minor)


def version_line(version: str) -> str:
    """The table that covers TensorRT `version`: '8.6.1' -> '8.6', '10.13.0' -> '10.5' (the newest line at or
    below it: a release between two tables is checked against the older, which parses a subset), '10' ->
    '10.0' (a bare major: its oldest line, so the check holds for every release of it), '11.1' -> '11.0'."""
    parts = version.strip().split(".")
    try:
        major = int(parts[0])
        minor = int(parts[1]) if len(parts) > 1 and parts[1] else None
    except ValueError:
        raise MfssdError(f"not a TensorRT version: {version!r} (e.g. 8.6, 10.3, 11.0)") from None
    same = sorted((_key(k), k) for k in tables() if _key(k)[0] == major)
    if minor is None and same:
        return same[0][1]
    below = [k for (mj, mn), k in same if mn <= (minor or 0)]
    if not below:
        raise MfssdError(f"TensorRT {version} is not covered: known lines are {', '.join(tables())} (8.5 and newer)")
    return below[-1]


def _attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def lint(model: onnx.ModelProto, version: str) -> list[Finding]:
    """Every problem TensorRT `version`'s ONNX parser would have with `model` (empty: none found)."""
    line = version_line(version)
    table = tables()[line]
    supported = set(table["ops"])
    constant_inputs: dict[str, list[int]] = table.get("constant_inputs", {})
    lo, hi = table["opset"]
    out: list[Finding] = []
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consts = set(inits) | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    producers = {o: n for n in g.node for o in n.output}

    def add(node: str, msg: str) -> None:
        out.append(Finding(line, node, msg))

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or not lo <= opset <= hi:
        add(
            "model",
            f"opset {opset} is outside the parser's range {lo}..{hi}; re-export with --opset {min(hi, 17)}",
        )

    for inp in g.input:
        if inp.name in inits:
            continue
        dims = inp.type.tensor_type.shape.dim
        dynamic = [i for i, d in enumerate(dims) if not d.HasField("dim_value") and i != 0]
        if dynamic:
            add(inp.name, f"input axes {dynamic} are dynamic; only the batch axis (0) may be")

    for n in g.node:
        name = n.name or n.op_type
        if n.domain not in ("", "ai.onnx"):
            add(name, f"custom-domain op {n.domain}::{n.op_type} needs a plugin")
            continue
        if n.op_type not in supported:
            add(name, f"{n.op_type} is not supported by the ONNX parser")
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            _check_qdq(n, inits, producers, g, add)
        elif n.op_type == "Resize":
            mode = _attr(n, "mode", b"nearest")
            coord = _attr(n, "coordinate_transformation_mode", b"half_pixel")
            mode, coord = (v.decode() if isinstance(v, bytes) else v for v in (mode, coord))
            if mode not in RESIZE_MODES:
                add(name, f"Resize mode {mode!r} is not supported (nearest, linear)")
            if coord not in RESIZE_COORD_MODES:
                add(name, f"Resize coordinate_transformation_mode {coord!r} is not supported")
            if _attr(n, "antialias", 0):
                add(name, "Resize antialias is not supported")
        elif n.op_type == "NonMaxSuppression":
            for i, what in ((2, "max_output_boxes_per_class"), (3, "iou_threshold"), (4, "score_threshold")):
                if len(n.input) > i and n.input[i] and n.input[i] not in consts:
                    add(name, f"NonMaxSuppression {what} must be a constant (initializer)")
        elif n.op_type == "TopK":
            if n.input[1] not in inits:
                add(name, "TopK K must be an initializer")
            else:
                k = int(numpy_helper.to_array(inits[n.input[1]]).reshape(-1)[0])
                if k >= TOPK_MAX:
                    add(name, f"TopK K={k} must be < {TOPK_MAX}")
            if _attr(n, "sorted", 1) != 1:
                add(name, "TopK sorted must be 1")
        for idx in constant_inputs.get(n.op_type, ()):
            if len(n.input) > idx and n.input[idx] and n.input[idx] not in consts:
                what = "axis" if n.op_type == "CumSum" else "axes"
                add(name, f"{n.op_type} {what} (input {idx}) must be a constant")
    return out


def _check_qdq(
    n: onnx.NodeProto,
    inits: dict[str, onnx.TensorProto],
    producers: dict[str, onnx.NodeProto],
    g: onnx.GraphProto,
    add: Any,
) -> None:
    name = n.name or n.op_type
    src = inits.get(n.input[0])
    if n.op_type == "DequantizeLinear" and src is not None and src.data_type != onnx.TensorProto.INT8:
        kind = onnx.TensorProto.DataType.Name(src.data_type)
        add(
            name,
            f"dequantizes an {kind} tensor; TensorRT takes INT8 only (a quantized bias: use QuantizeBias=False)",
        )
        return
    if len(n.input) > 2 and n.input[2]:
        zp = inits.get(n.input[2])
        if zp is None or np.any(numpy_helper.to_array(zp)):
            add(name, "zero point must be a constant 0 (symmetric quantization)")
        elif zp.data_type != onnx.TensorProto.INT8:
            add(name, "zero point must be INT8 (TensorRT quantizes to signed 8-bit)")
    scale = inits.get(n.input[1])
    if scale is None:
        add(name, "scale must be an initializer")
        return
    size = int(np.prod(scale.dims)) if scale.dims else 1
    is_weight = n.op_type == "DequantizeLinear" and n.input[0] in inits
    if is_weight and size > 1:
        w = inits[n.input[0]]
        axis = _attr(n, "axis", 1)
        if axis != 0 or size != w.dims[0]:
            add(
                name,
                f"per-channel weight scales must be on axis 0 (output channels), got axis {axis}, {size} scales",
            )
    elif not is_weight and size > 1:
        add(name, "activation scales must be per-tensor (one scale)")
