"""Sanity bounds an exported artifact must meet before it is written (no onnx/torch: the CLI reads them)."""

# Reduced precision (INT8, FP16): F1 of its detections scoring >= AGREEMENT_SCORE (what a user would
# draw) against FP32's on the parity images. Measured on the bundled demo models' 4 samples: see
# MIN_AGREEMENT_MEASURED. A stale calibration (another model's ranges) scored 0.00.
MIN_AGREEMENT = 0.6
AGREEMENT_SCORE = 0.25
