"""The TensorRT compatibility check on every exported variant and on deliberately unsupported graphs."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mfssd_deploy.errors import MfssdError
from mfssd_deploy.exporters.trt_lint import lint, tables, version_line

LINES = ["8.5", "8.6", "10.0", "10.1", "10.3", "10.4", "10.5", "10.14", "10.15", "11.0"]


def test_tables_name_their_sources() -> None:
    assert list(tables()) == LINES  # one table per minor line where the parser changed, oldest first
    for line, t in tables().items():
        assert t["source"] and t["constant_source"] and len(t["ops"]) > 100, line
        assert t["opset"][0] <= 17 <= t["opset"][1], line
    # a release between two tables is checked against the older one; a bare major against its oldest
    assert version_line("8.6.1") == "8.6" and version_line("10.2.0") == "10.1" and version_line("10.13") == "10.5"
    assert version_line("10.16.1") == "10.15" and version_line("10") == "10.0" and version_line("11.1") == "11.0"
    assert version_line("11") == "11.0" and version_line("8") == "8.5"
    for bad in ("7.2", "8.4", "9.3"):
        with pytest.raises(MfssdError, match="known lines"):
            version_line(bad)


def test_late_10x_operators_are_not_in_the_early_10x_tables() -> None:
    """One table built from 10.15 is not conservative for 10.0-10.3 (onnx-tensorrt Changelog / GA tables)."""
    ops = {line: set(t["ops"]) for line, t in tables().items()}
    arrived = {"DeformConv": "10.1", "HannWindow": "10.4", "BlackmanWindow": "10.4", "HammingWindow": "10.4",
               "STFT": "10.5", "Attention": "10.14", "RotaryEmbedding": "10.15", "RMSNormalization": "10.15",
               "TensorScatter": "10.15", "Swish": "11.0"}  # fmt: skip
    order = list(tables())
    for op, first in arrived.items():
        for line in order:
            assert (op in ops[line]) == (order.index(line) >= order.index(first)), (op, line)
    for older, newer in itertools.pairwise(order):  # later lines only add (monotone: older is stricter)
        assert ops[older] <= ops[newer] or older.split(".")[0] != newer.split(".")[0], (older, newer)
    assert {"GroupNormalization", "LayerNormalization", "IsInf"} <= ops["8.6"] - ops["8.5"]  # the 8.6-GA table


def _axes_model(op: str, axes_from_input: bool, opset: int = 17):  # type: ignore[no-untyped-def]
    """`op` with its axes computed from a tensor (Shape -> Slice) instead of a constant."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    inits = {"starts": np.array([0], np.int64), "ends": np.array([2], np.int64), "axes_c": np.array([1], np.int64),
             "one": np.array([1], np.int64), "zero": np.array([0], np.int64)}  # fmt: skip
    nodes = [helper.make_node("Shape", ["x"], ["shp"]), helper.make_node("Slice", ["shp", "zero", "one"], ["first"]),
             helper.make_node("Sub", ["first", "zero"], ["axes_t"])]  # fmt: skip
    axes = "axes_t" if axes_from_input else "axes_c"
    inputs = {"Slice": ["x", "starts", "ends", axes], "Unsqueeze": ["x", axes], "Squeeze": ["x", axes],
              "ReduceSum": ["x", axes]}[op]  # fmt: skip
    nodes.append(helper.make_node(op, inputs, ["y"], name="target"))
    return graph(nodes, inits, [x], [y], opset=opset)


@pytest.mark.parametrize(
    ("op", "strict_lines"),
    [
        # Slice axes: 'must be an initializer' to 10.1-GA; 10.3 GA 'Added support for tensor `axes` inputs for Slice'
        ("Slice", {"8.5", "8.6", "10.0", "10.1"}),
        # Unsqueeze/Squeeze axes 'must be a constant tensor' / 'resolvable to a constant' on every line (10.15 table)
        ("Unsqueeze", set(LINES)),
        ("Squeeze", set(LINES)),
        # Reduce* axes: 8.6-GA reduceTensor ASSERT 'Axis input must be an initializer!'; 10.x tables 'an initializer'
        ("ReduceSum", set(LINES)),
    ],
)
def test_constant_axes_per_line(op: str, strict_lines: set[str]) -> None:
    for line in LINES:
        found = [str(f) for f in lint(_axes_model(op, axes_from_input=True), line) if f.node == "target"]
        assert bool(found) == (line in strict_lines), (op, line, found)
        if found:
            assert f"{op} axes" in found[0] and "must be a constant" in found[0]
        assert not [f for f in lint(_axes_model(op, axes_from_input=False), line) if f.node == "target"]


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
