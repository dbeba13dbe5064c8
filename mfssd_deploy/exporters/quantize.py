"""INT8 Q/DQ through onnxruntime.quantization: symmetric, per-channel weights on axis 0, QInt8.

That is the explicit-quantization form every TensorRT from 8.5 to 11 consumes (zero points 0,
activations per tensor, weights per output channel) and ONNX Runtime CPU runs too, so its
accuracy is measured here. Calibration images go through the inference pre-processing.
"""

from __future__ import annotations

import inspect
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import onnx

from mfssd_deploy.config import ModelConfig
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.inputs import IMAGE_SUFFIXES, image_files
from mfssd_deploy.preprocess import preprocess_batch

log = logging.getLogger("mfssd_deploy.export")
METHODS = ("minmax", "entropy", "percentile")
# QuantizeBias=False keeps conv biases in FP32: TensorRT's parser dequantizes only INT8 tensors (an
# INT32 bias DequantizeLinear does not parse), and ONNX Runtime CPU is as fast either way (measured:
# 169 vs 173 ms for the full MFSSD-BN).
# Quantize the compute, not the outputs: softmax scores in int8 would have a 1/127 resolution,
# coarser than the 0.01 score threshold, and loc offsets would lose box precision.
QUANT_OPS = ("Conv", "MaxPool", "Resize")
# u8 activations: a ReLU after a conv disappears into the conv's uint8 output (zero point at 0.0,
# values clipped at it); measured 12-17% faster on the full-size model. With symmetric int8 the
# ReLU stays between Q/DQ pairs, which TensorRT fuses into the conv itself.
QUANT_OPS_U8 = (*QUANT_OPS, "Relu")


def list_images(folder: str | os.PathLike[str], limit: int | None = None) -> list[Path]:
    """Image files of a folder (recursively), evenly spread over the sorted list when limited."""
    root = Path(folder)
    if not root.is_dir():
        raise MfssdError(f"image folder not found: {root}")
    files = image_files(root)
    if not files:
        raise MfssdError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {root}")
    if limit is not None and limit < len(files):
        idx = np.linspace(0, len(files) - 1, limit).round().astype(int)
        files = [files[i] for i in idx]
    return files


class _Reader:
    """CalibrationDataReader over image files, one image per call, preprocessed like inference."""

    def __init__(self, files: Sequence[Path], cfg: ModelConfig) -> None:
        self.files, self.cfg = list(files), cfg
        self._it: Iterator[dict[str, np.ndarray]] | None = None

    def _gen(self) -> Iterator[dict[str, np.ndarray]]:
        from tqdm import tqdm

        for f in tqdm(self.files, desc="calibrating", unit="img", leave=False, disable=None):
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                log.warning("calibration image skipped (unreadable): %s", f)
                continue
            c = self.cfg
            yield {"images": preprocess_batch([img], c.input_size, c.mean, c.std, c.color)}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._it is None:
            self._it = self._gen()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None


def resolve_nodes(model: onnx.ModelProto, names: Sequence[str]) -> list[str]:
    """Node names to keep in FP32; aliases: `first-conv` (the conv reading the image), `heads`."""
    out: list[str] = []
    all_names = {n.name for n in model.graph.node}
    for name in names:
        if name == "first-conv":
            out += [n.name for n in model.graph.node if n.op_type == "Conv" and "images" in n.input][:1]
        elif name == "heads":
            out += [n.name for n in model.graph.node if n.op_type == "Conv" and "/head/" in n.name]
        elif name in all_names:
            out.append(name)
        else:
            raise MfssdError(f"--keep-fp32 {name!r} is not a node of the model (use a node name, first-conv or heads)")
    return out


def quantize_int8(
    raw_fp32: onnx.ModelProto,
    cfg: ModelConfig,
    calib_files: Sequence[Path],
    *,
    method: str = "minmax",
    keep_fp32: Sequence[str] = (),
    cache_path: Path | None = None,
    activations: str = "s8",
) -> onnx.ModelProto:
    """The raw FP32 model with Q/DQ pairs; calibration ranges are read from / written to cache_path.

    activations "s8": symmetric int8 (what TensorRT requires; runs everywhere). "u8": asymmetric
    uint8 activations with int8 weights, ONNX Runtime CPU's fast path (its VNNI kernels multiply
    u8 x s8, and ReLUs fold into the conv outputs; measured here 1.45-1.6x the speed of the s8 model on
    the full-size MFSSD-BN), not loadable by TensorRT.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if activations not in ("s8", "u8"):
        raise MfssdError(f"INT8 activations {activations!r}: choose s8 (TensorRT) or u8 (ONNX Runtime CPU)")
    if method not in METHODS:
        raise MfssdError(f"--calib-method {method!r}: choose one of {', '.join(METHODS)}")
    calib = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[method]
    kwargs = {}
    if cache_path is not None and "calibration_cache_path" in inspect.signature(quantize_static).parameters:
        kwargs["calibration_cache_path"] = str(cache_path)
    root = logging.getLogger()
    level = root.level
    with tempfile.TemporaryDirectory(prefix="mfssd-q.") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(raw_fp32, src)
        root.setLevel(logging.ERROR)  # onnxruntime.quantization logs advice on the root logger
        try:
            quantize_static(
                str(src),
                str(dst),
                _Reader(calib_files, cfg),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(QUANT_OPS if activations == "s8" else QUANT_OPS_U8),
                activation_type=QuantType.QInt8 if activations == "s8" else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                calibrate_method=calib,
                nodes_to_exclude=resolve_nodes(raw_fp32, keep_fp32),
                extra_options={
                    "ActivationSymmetric": activations == "s8",
                    "WeightSymmetric": True,
                    "QuantizeBias": False,
                },
                **kwargs,
            )
        finally:
            root.setLevel(level)
        return onnx.load(dst)
