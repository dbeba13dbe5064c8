"""The TensorRT compatibility check on every exported variant and on deliberately unsupported graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mfssd_deploy.errors import MfssdError
from mfssd_deploy.exporters.trt_lint import lint, tables, version_line

LINES = ["8.5", "8.6", "10.3", "11.0"]


def test_tables_name_their_sources() -> None:
    for line, t in tables().items():
        assert t["source"] and len(t["ops"]) > 100 and t["opset"][0] <= 17 <= t["opset"][1], line
    assert version_line("8.6.1") == "8.6" and version_line("10.13") == "10" and version_line("11") == "11"
    with pytest.raises(MfssdError, match="known lines"):
        version_line("7.2")


@pytest.fixture(scope="module")
def exported(artifacts: dict[str, Path]) -> list[onnx.ModelProto]:
    keys = ("raw", "e2e", "int8_raw", "int8", "fp16_raw", "fp16")  # every layout x precision
    return [onnx.load(artifacts[k]) for k in keys]


@pytest.mark.parametrize("version", LINES)
def test_every_exported_variant_passes(exported: list[onnx.ModelProto], version: str) -> None:
    for model in exported:
        assert lint(model, version) == [], model.graph.output[0].name


def graph(nodes, inits, inputs, outputs, opset=17):  # type: ignore[no-untyped-def]
    g = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def test_unsupported_graph_is_reported() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "h", 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    inits = {
        "w_q": np.ones((4, 3, 1, 1), np.int8),
        "w_s": np.ones(4, np.float32),
        "w_s_bad": np.ones(4, np.float32),
        "zp": np.array(3, np.int8),
        "a_s": np.ones(3, np.float32),
        "k": np.array([5000], np.int64),
        "b_q": np.ones(4, np.int32),
        "b_s": np.ones(4, np.float32),
        "roi": np.zeros(0, np.float32),
        "scales": np.array([1, 1, 2, 2], np.float32),
    }
    nodes = [
        helper.make_node("Unique", ["x"], ["u"], name="unique"),
        helper.make_node("QuantizeLinear", ["x", "a_s", "zp"], ["xq"], name="q_act", axis=1),
        helper.make_node("DequantizeLinear", ["w_q", "w_s_bad"], ["w"], name="dq_w", axis=1),
        helper.make_node("DequantizeLinear", ["b_q", "b_s"], ["b"], name="dq_bias", axis=0),
        helper.make_node("TopK", ["x", "k"], ["tv", "ti"], name="topk"),
        helper.make_node("Resize", ["x", "roi", "scales"], ["r"], name="resize", mode="cubic"),
        helper.make_node("NonMaxSuppression", ["x", "x", "k", "x"], ["sel"], name="nms"),
        helper.make_node("Identity", ["x"], ["y"], name="id"),
    ]
    model = graph(nodes, inits, [x], [y], opset=18)
    text = "\n".join(str(f) for f in lint(model, "8.6"))
    assert "opset 18 is outside the parser's range 1..17" in text
    assert "input axes [2] are dynamic" in text
    assert "unique: Unique is not supported" in text
    assert "q_act: zero point must be a constant 0" in text and "q_act: activation scales must be per-tensor" in text
    assert "dq_w: per-channel weight scales must be on axis 0" in text
    assert "dq_bias: dequantizes an INT32 tensor" in text
    assert "topk: TopK K=5000 must be < 3840" in text
    assert "resize: Resize mode 'cubic' is not supported" in text
    assert "nms: NonMaxSuppression iou_threshold must be a constant" in text
    ten = "\n".join(str(f) for f in lint(model, "10.3"))
    assert "opset 18" not in ten  # 10.x parses opset 18
    custom = graph([helper.make_node("EfficientNMS_TRT", ["x"], ["y"], domain="trt.plugins", name="p")], {}, [x], [y])
    assert "needs a plugin" in str(lint(custom, "10")[1])
