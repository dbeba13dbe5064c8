"""Exporters: ONNX (raw, end2end), INT8 Q/DQ, FP16, TensorRT engines, and the TensorRT compatibility check."""
