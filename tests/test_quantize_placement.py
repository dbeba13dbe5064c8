"""Where the TensorRT-targeted (s8) INT8 file has its Q/DQ pairs: TensorRT's placement guidance, read off the graph."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import onnx


def _graph(path: Path) -> tuple[list[onnx.NodeProto], dict[str, onnx.NodeProto], dict[str, list[onnx.NodeProto]]]:
    nodes = list(onnx.load(path).graph.node)
    producer = {o: n for n in nodes for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for n in nodes:
        for i in n.input:
            consumers[i].append(n)
    return nodes, producer, consumers


def test_s8_file_quantizes_conv_inputs_only(artifacts: dict[str, Path]) -> None:
    """Every Conv reads a dequantized activation and dequantized int8 weights; no Conv output is quantized
    (one rounding per activation: Conv -> ReLU -> Q -> DQ -> Conv), so the 12 head outputs reach the
    softmax and the box decoder in float."""
    nodes, producer, consumers = _graph(artifacts["int8_raw"])
    convs = [n for n in nodes if n.op_type == "Conv"]
    assert convs
    for conv in convs:
        act, weight = (producer.get(t) for t in conv.input[:2])
        assert act is not None and act.op_type == "DequantizeLinear", conv.name
        assert weight is not None and weight.op_type == "DequantizeLinear", conv.name
        assert not any(c.op_type == "QuantizeLinear" for c in consumers[conv.output[0]]), conv.name
    heads = [c for c in convs if "/head/" in c.name]
    assert len(heads) == 12
    # each activation is rounded once: a Q node never reads the output of another Q/DQ pair's consumer chain
    # Conv -> (Q) -> DQ -> ReLU -> Q, the old placement's double rounding, is gone
    for q in (n for n in nodes if n.op_type == "QuantizeLinear"):
        src = producer.get(q.input[0])
        assert src is None or src.op_type != "Conv", q.name


def test_s8_file_keeps_its_accuracy_against_fp32(artifacts: dict[str, Path]) -> None:
    """The placement changes the rounding, not the model: INT8 scores stay close to FP32's on real images."""
    import numpy as np

    from mfssd_deploy.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from mfssd_deploy.runtime.inputs import read_image
    from mfssd_deploy.runtime.preprocess import preprocess_batch

    fp32, int8 = OnnxRuntimeBackend(artifacts["raw"]), OnnxRuntimeBackend(artifacts["int8_raw"])
    c = fp32.config
    x = preprocess_batch([read_image(p) for p in sorted(artifacts["imgs"].iterdir())], c.input_size, c.mean, c.std,
                         c.color)  # fmt: skip
    (loc32, sc32), (loc8, sc8) = fp32.infer(x), int8.infer(x)
    assert np.abs(np.asarray(sc8) - np.asarray(sc32)).max() < 0.05
    assert np.abs(np.asarray(loc8) - np.asarray(loc32)).mean() < 0.05
