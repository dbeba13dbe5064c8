"""The end-to-end post-processing subgraph, appended to a raw model with standard ONNX ops only.

decode against constant priors -> per image, the best K (prior, class) scores (TopK with constant
K, as TensorRT requires) -> NonMaxSuppression per class (constant thresholds) -> best max_det per
image -> padded outputs in the EfficientNMS convention. ONNX Runtime and TensorRT >= 8.5 (its
INMSLayer) run it; the semantics equal mfssd_deploy.geometry.postprocess.postprocess with the same
settings, which the export parity check verifies.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mfssd_deploy.artifacts import OUTPUTS

END2END_OUTPUTS = OUTPUTS["end2end"]


class _Builder:
    def __init__(self, prefix: str = "e2e") -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.prefix = prefix
        self.n = 0

    def name(self, hint: str) -> str:
        self.n += 1
        return f"{self.prefix}/{hint}_{self.n}"

    def const(self, value: np.ndarray, hint: str = "const") -> str:
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(
        self,
        op_type: str,
        inputs: list[str],
        hint: str = "",
        outputs: list[str] | None = None,
        n_out: int = 1,
        **attrs: Any,
    ) -> list[str]:
        outs = outputs or [self.name(hint or op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.name(op_type), **attrs))
        return outs

    def one(self, op_type: str, inputs: list[str], hint: str = "", **attrs: Any) -> str:
        return self.op(op_type, inputs, hint, **attrs)[0]


def append_end2end(
    model: onnx.ModelProto,
    priors: np.ndarray,
    variances: tuple[float, float],
    num_classes: int,
    *,
    conf_thresh: float,
    iou_thresh: float,
    max_det: int,
    pre_nms_topk: int,
    wh_clamp: float | None = None,
    clip_before_nms: bool = False,
    loc_name: str = "loc",
    scores_name: str = "scores",
) -> onnx.ModelProto:
    """Return a copy of `model` whose outputs are num_dets, det_boxes, det_scores, det_classes."""
    num_priors = priors.shape[0]
    if {o.name for o in model.graph.output} != {loc_name, scores_name}:
        raise ValueError(f"the raw model needs exactly the outputs {loc_name!r} and {scores_name!r}")
    fg = num_classes - 1
    k = min(pre_nms_topk, num_priors * fg)
    if max_det > k:
        raise ValueError(f"max_det ({max_det}) must not exceed pre_nms_topk ({pre_nms_topk})")
    f32 = np.float32
    b = _Builder()

    # Decode: cxcy = p_cxcy + loc_xy * v0 * p_wh; wh = p_wh * exp(loc_wh * v1); corners.
    p_cxcy = b.const(priors[None, :, :2].astype(f32), "prior_cxcy")
    p_wh_v0 = b.const((priors[None, :, 2:] * variances[0]).astype(f32), "prior_wh_v0")
    p_wh = b.const(priors[None, :, 2:].astype(f32), "prior_wh")
    i64 = lambda *v: b.const(np.array(v, dtype=np.int64), "idx")  # noqa: E731
    loc_xy = b.one("Slice", [loc_name, i64(0), i64(2), i64(2)], "loc_xy")
    loc_wh = b.one("Slice", [loc_name, i64(2), i64(4), i64(2)], "loc_wh")
    cxcy = b.one("Add", [p_cxcy, b.one("Mul", [loc_xy, p_wh_v0])], "cxcy")
    dwh = b.one("Mul", [loc_wh, b.const(np.array(variances[1], f32), "v1")])
    if wh_clamp is not None:  # torchvision's box coder: an upper bound before exp
        dwh = b.one("Min", [dwh, b.const(np.array(wh_clamp, f32), "wh_clamp")], "dwh_clamped")
    wh = b.one("Mul", [p_wh, b.one("Exp", [dwh])])
    half = b.one("Mul", [wh, b.const(np.array(0.5, f32), "half")])
    boxes = b.one("Concat", [b.one("Sub", [cxcy, half]), b.one("Add", [cxcy, half])], "boxes", axis=2)  # [B,P,4]
    if clip_before_nms:  # torchvision's order: the image's box, then NMS
        boxes = b.one(
            "Clip", [boxes, b.const(np.array(0.0, f32), "lo"), b.const(np.array(1.0, f32), "hi")], "boxes_clipped"
        )

    # Candidates: the best K (prior, class) pairs of each image, over foreground classes.
    fg_scores = b.one("Slice", [scores_name, i64(1), i64(num_classes), i64(2)], "fg_scores")  # [B,P,C-1]
    flat = b.one("Reshape", [fg_scores, i64(0, -1)], "flat_scores")  # [B, P*(C-1)]
    top_vals, top_idx = b.op("TopK", [flat, i64(k)], "topk", n_out=2, axis=1, largest=1, sorted=1)  # [B,K]
    fg_const = b.const(np.array(fg, np.int64), "num_fg")
    prior_idx = b.one("Div", [top_idx, fg_const], "prior_idx")  # non-negative: floor division
    class_idx = b.one("Sub", [top_idx, b.one("Mul", [prior_idx, fg_const])], "class_idx")  # [B,K]
    gather_idx = b.one("Expand", [b.one("Unsqueeze", [prior_idx, i64(2)]), i64(1, 1, 4)], "gather_idx")
    cand_boxes = b.one("GatherElements", [boxes, gather_idx], "cand_boxes", axis=1)  # [B,K,4]

    # Per-class NMS over the candidates: scores [B, C-1, K], zero where a candidate is another class.
    classes_col = b.const(np.arange(fg, dtype=np.int64).reshape(1, fg, 1), "class_ids")
    is_class = b.one("Equal", [b.one("Unsqueeze", [class_idx, i64(1)]), classes_col], "is_class")
    zero = b.const(np.array(0.0, f32), "zero")
    nms_scores = b.one("Where", [is_class, b.one("Unsqueeze", [top_vals, i64(1)]), zero], "nms_scores")
    selected = b.one(
        "NonMaxSuppression",
        [cand_boxes, nms_scores, i64(max_det), b.const(np.array([iou_thresh], f32), "iou"),
         b.const(np.array([conf_thresh], f32), "score_thr")],
        "selected", center_point_box=0,
    )  # fmt: skip  # [N, 3] = (batch, class, candidate)

    # Kept candidates as a dense [B, K] score map (-1 where suppressed), then the best max_det.
    sel_bk = b.one("Gather", [selected, i64(0, 2)], "sel_bk", axis=1)  # [N, 2]
    sel_scores = b.one("GatherND", [nms_scores, selected], "sel_scores")  # [N]
    minus_one = b.one(
        "ConstantOfShape",
        [b.one("Shape", [top_vals])],
        "minus_one",
        value=numpy_helper.from_array(np.array([-1.0], f32)),
    )  # [B,K] of -1
    kept = b.one("ScatterND", [minus_one, sel_bk, sel_scores], "kept")
    det_vals, det_idx = b.op("TopK", [kept, i64(max_det)], "det", n_out=2, axis=1, largest=1, sorted=1)
    valid = b.one("Greater", [det_vals, b.const(np.array(-0.5, f32), "neg_half")], "valid")  # [B,max_det]
    b.op("Where", [valid, det_vals, zero], outputs=["det_scores"])
    det_gather = b.one("Expand", [b.one("Unsqueeze", [det_idx, i64(2)]), i64(1, 1, 4)])
    det_boxes_raw = b.one("GatherElements", [cand_boxes, det_gather], axis=1)
    b.op("Where", [b.one("Unsqueeze", [valid, i64(2)]), det_boxes_raw, zero], outputs=["det_boxes"])
    det_cls = b.one("GatherElements", [class_idx, det_idx], axis=1)
    det_cls = b.one("Where", [valid, det_cls, b.const(np.array(0, np.int64), "zero_i")])
    b.op("Cast", [det_cls], outputs=["det_classes"], to=TensorProto.INT32)
    # ReduceSum in FP32: TensorRT 8.5/8.6 reduce only floating-point tensors.
    count = b.one("ReduceSum", [b.one("Cast", [valid], to=TensorProto.FLOAT), i64(1)], keepdims=1)
    b.op("Cast", [count], outputs=["num_dets"], to=TensorProto.INT32)

    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    g.node.extend(b.nodes)
    g.initializer.extend(b.inits)
    del g.output[:]
    batch = helper.make_tensor_value_info  # shapes with a symbolic batch axis
    g.output.extend(
        [
            batch("num_dets", TensorProto.INT32, ["batch", 1]),
            batch("det_boxes", TensorProto.FLOAT, ["batch", max_det, 4]),
            batch("det_scores", TensorProto.FLOAT, ["batch", max_det]),
            batch("det_classes", TensorProto.INT32, ["batch", max_det]),
        ]
    )
    return out
