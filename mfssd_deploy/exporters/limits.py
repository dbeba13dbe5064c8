"""Sanity bounds an exported artifact must meet before it is written (no onnx/torch: the CLI reads them)."""

# Reduced precision (INT8, FP16): F1 of its detections scoring >= AGREEMENT_SCORE (what a user would
# draw) against FP32's on the parity images. Measured on the bundled demo models' 4 samples (plain and
# pruned): INT8 s8 0.93-0.98, INT8 u8 and FP16 1.00; ranges shrunk 50x (a wrong calibration) fail it.
MIN_AGREEMENT = 0.6
AGREEMENT_SCORE = 0.25
