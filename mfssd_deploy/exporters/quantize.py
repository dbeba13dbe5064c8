"""INT8 Q/DQ through onnxruntime.quantization: symmetric, per-channel weights on axis 0, QInt8.

That is the explicit-quantization form every TensorRT from 8.5 to 11 consumes (zero points 0,
activations per tensor, weights per output channel) and ONNX Runtime CPU runs too, so its
accuracy is measured here. Calibration images go through the inference pre-processing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from mfssd_deploy.config import ModelConfig
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.fileio import sha256_file, write_json
from mfssd_deploy.geometry import Geometry
from mfssd_deploy.runtime.inputs import read_image

log = logging.getLogger("mfssd_deploy.export")
METHODS = ("minmax", "entropy", "percentile")
# QuantizeBias=False keeps conv biases in FP32: TensorRT's parser dequantizes only INT8 tensors (an
# INT32 bias DequantizeLinear does not parse), and ONNX Runtime CPU is as fast either way (measured:
# 169 vs 173 ms for the full MFSSD-BN).
# Quantize the compute, not the outputs: softmax scores in int8 would have a 1/127 resolution,
# coarser than the 0.01 score threshold, and loc offsets would lose box precision.
QUANT_OPS = ("Conv", "MaxPool", "Resize")
# u8 activations: a ReLU after a conv disappears into the conv's uint8 output (zero point at 0.0,
# values clipped at it); measured 12-17% faster on the full-size model.
QUANT_OPS_U8 = (*QUANT_OPS, "Relu")
# s8 (the TensorRT file): TensorRT's placement guidance, "quantize all inputs of weighted operations"
# and "by default, do not quantize the outputs of weighted operations" (TensorRT Developer Guide,
# Explicit Quantization, Q/DQ Layer-Placement Recommendations). So Conv -> ReLU -> Q -> DQ -> Conv (one
# rounding per activation, the ReLU fused into the conv), the 12 head outputs stay float (conf logits
# are not rounded before the softmax) and Resize/Concat/BN of the fusion module run on float tensors
# with a single Q/DQ at the next conv's input (nothing for TensorRT to reconcile across the Concat).
# MaxPool needs no Q/DQ of its own: TensorRT moves the conv's Q backwards over it ("commuting" layers).
# Measured on the demo models against the old every-output placement: benchmarks/int8_placement/.
QUANT_OPS_S8 = ("Conv",)
EXCLUDE_OUTPUTS_S8 = ("Conv",)
# A calibration cache is valid only for what produced it: everything that changes the ranges is in
# its key (graph, images, pre-processing, method, recipe, quantizer version). Bump on a recipe change.
CACHE_FORMAT = "mfssd-calibration-cache/1"


class _Reader:
    """CalibrationDataReader over image files, one image per call, preprocessed like inference."""

    def __init__(self, files: Sequence[Path], cfg: ModelConfig, progress: bool = True) -> None:
        self.files, self.cfg, self.progress = list(files), cfg, progress
        self._it: Iterator[dict[str, np.ndarray]] | None = None

    def _gen(self) -> Iterator[dict[str, np.ndarray]]:
        from tqdm import tqdm

        for f in tqdm(self.files, desc="calibrating", unit="img", leave=False,
                      disable=None if self.progress else True):  # fmt: skip
            try:
                img = read_image(f)  # the Detector's own reader: EXIF orientation, gray, alpha, 16-bit
            except MfssdError as exc:
                log.warning("calibration image skipped: %s", exc)
                continue
            yield {"images": Geometry(self.cfg).preprocess([img])}

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


def calibration_key(
    raw_fp32: onnx.ModelProto,
    cfg: ModelConfig,
    calib_files: Sequence[Path],
    *,
    method: str,
    keep_nodes: Sequence[str],
    activations: str,
) -> dict[str, Any]:
    """Everything the calibration ranges depend on; a cache whose key differs in any field is stale."""
    import onnxruntime

    graph = hashlib.sha256(raw_fp32.SerializeToString(deterministic=True)).hexdigest()
    return {
        "fp32_graph_sha256": graph,
        "images": [[Path(f).name, os.path.getsize(f), sha256_file(f)] for f in calib_files],
        "count": len(calib_files),
        "method": method,
        "preprocess": {"input_size": cfg.input_size, "mean": list(cfg.mean), "std": list(cfg.std), "color": cfg.color},
        "recipe": {
            "activations": activations,
            "op_types": list(_op_types(activations)),
            "exclude_output_quantization": list(_exclude_outputs(activations)),
            "keep_fp32": sorted(keep_nodes),
            "per_channel": True,
            "weight_symmetric": True,
            "quantize_bias": False,
        },
        "onnxruntime": onnxruntime.__version__,
    }


def _stale_reason(cached: dict[str, Any], key: dict[str, Any]) -> str | None:
    """None when the cache fits `key`, else what differs, in words."""
    old = cached.get("key")
    if cached.get("format") != CACHE_FORMAT or not isinstance(old, dict) or not isinstance(cached.get("ranges"), dict):
        return "it is not an mfssd calibration cache of this version"
    words = {
        "fp32_graph_sha256": "another model (FP32 graph)",
        "images": "other calibration images",
        "count": "another number of calibration images",
        "method": f"another method ({old.get('method')})",
        "preprocess": "other pre-processing",
        "recipe": "another quantization recipe",
        "onnxruntime": f"another onnxruntime ({old.get('onnxruntime')})",
    }
    diffs = [words[k] for k in words if old.get(k) != key[k]]
    return f"it was made for {', '.join(diffs)}" if diffs else None


def quantize_int8(
    raw_fp32: onnx.ModelProto,
    cfg: ModelConfig,
    calib_files: Sequence[Path],
    *,
    method: str = "minmax",
    keep_fp32: Sequence[str] = (),
    cache_path: Path | None = None,
    activations: str = "s8",
    recalibrate: bool = False,
    status: dict[str, Any] | None = None,
    progress: bool = True,
) -> onnx.ModelProto:
    """The raw FP32 model with Q/DQ pairs.

    With cache_path, the ranges are reused only when the cache's key (calibration_key) equals this
    run's, else recalibrated and the cache replaced (a stale cache once gave a broken model silently);
    recalibrate=True always recalibrates. `status`, when given, receives {"calibration": "reused" |
    "computed", "reason": ...}.

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
    keep_nodes = resolve_nodes(raw_fp32, keep_fp32)
    key = calibration_key(raw_fp32, cfg, calib_files, method=method, keep_nodes=keep_nodes, activations=activations)
    reason = _cache_decision(cache_path, key, recalibrate)
    if reason is None:
        log.info("INT8 calibration: reusing the ranges in %s (same model, images, method and recipe)", cache_path)
    elif cache_path is not None:
        log.info("INT8 calibration: recalibrating, %s", reason)
    if reason is not None and not calib_files:
        raise MfssdError("INT8 calibration needs images: pass --calib DIR")
    if status is not None:
        status.update(calibration="reused" if reason is None else "computed", reason=reason)
    root = logging.getLogger()
    level = root.level
    with tempfile.TemporaryDirectory(prefix="mfssd-q.") as tmp:
        src, dst, ranges = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx", Path(tmp) / "ranges.json"
        if reason is None:
            assert cache_path is not None
            ranges.write_text(json.dumps(json.loads(cache_path.read_text())["ranges"]))
        onnx.save(raw_fp32, src)
        root.setLevel(logging.ERROR)  # onnxruntime.quantization logs advice on the root logger
        try:
            quantize_static(
                str(src),
                str(dst),
                _Reader(calib_files, cfg, progress),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(_op_types(activations)),
                activation_type=QuantType.QInt8 if activations == "s8" else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                calibrate_method=calib,
                nodes_to_exclude=keep_nodes,
                extra_options={
                    "ActivationSymmetric": activations == "s8",
                    "WeightSymmetric": True,
                    "QuantizeBias": False,
                    "OpTypesToExcludeOutputQuantization": list(_exclude_outputs(activations)),
                },
                calibration_cache_path=str(ranges),
            )
        finally:
            root.setLevel(level)
        if reason is not None and cache_path is not None:
            write_json(cache_path, {"format": CACHE_FORMAT, "key": key, "ranges": json.loads(ranges.read_text())})
        return onnx.load(dst)


def _op_types(activations: str) -> tuple[str, ...]:
    return QUANT_OPS_S8 if activations == "s8" else QUANT_OPS_U8


def _exclude_outputs(activations: str) -> tuple[str, ...]:
    return EXCLUDE_OUTPUTS_S8 if activations == "s8" else ()


def _cache_decision(cache_path: Path | None, key: dict[str, Any], recalibrate: bool) -> str | None:
    """None: reuse the cache; else why the ranges are computed afresh."""
    if cache_path is None:
        return "no cache"
    if recalibrate:
        return "--recalibrate given"
    if not cache_path.is_file():
        return f"no cache at {cache_path} yet"
    try:
        cached = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        return f"{cache_path} is unreadable"
    reason = _stale_reason(cached if isinstance(cached, dict) else {}, key)
    return None if reason is None else f"{cache_path.name}: {reason}"


# ------------------------------------------------------------------ builders (artifacts.ONNX_PRECISIONS)

MIN_CALIB_IMAGES = 32  # fewer draws a warning: the activation ranges of a handful of images are too narrow


def _calibration_files(req: Any) -> list[Path]:
    from mfssd_deploy.runtime.inputs import list_images

    if req.calib is None:
        raise MfssdError("--int8 needs calibration images: --calib DIR")
    return list_images(req.calib, req.calib_num)


def _build(activations: str, raw: onnx.ModelProto, cfg: ModelConfig, req: Any, name: str,
           status: dict[str, Any]) -> onnx.ModelProto:  # fmt: skip
    """One INT8 file of an export request (pipeline.ExportRequest); its cache beside the exported files
    (NAME.int8.calib.json, NAME.int8u8.calib.json) and its path in status["cache"]."""
    from mfssd_deploy.artifacts import ONNX_PRECISIONS

    files = _calibration_files(req)
    if activations == "s8":  # said once per export (the u8 file is a variant of --int8: it comes second)
        if len(files) < MIN_CALIB_IMAGES:
            log.warning("INT8: only %d calibration images in %s; ranges from so few images are often too narrow "
                        "(use %d or more, like the deployment's)", len(files), req.calib, MIN_CALIB_IMAGES)  # fmt: skip
        log.info("INT8: %d calibration images from %s (%s)", len(files), req.calib, req.calib_method)
    req.out_dir.mkdir(parents=True, exist_ok=True)
    precision = "int8-qdq" if activations == "s8" else "int8-qdq-u8"
    cache = req.out_dir / f"{name}{ONNX_PRECISIONS[precision].suffix}.calib.json"
    q = quantize_int8(raw, cfg, files, method=req.calib_method, keep_fp32=req.keep_fp32, cache_path=cache,
                      activations=activations, recalibrate=req.recalibrate, status=status,
                      progress=req.progress)  # fmt: skip
    status["cache"] = cache
    return q


def build_s8(raw: onnx.ModelProto, cfg: ModelConfig, req: Any, name: str, status: dict[str, Any]) -> onnx.ModelProto:
    """--int8: symmetric INT8 activations, the file TensorRT and every runtime take."""
    return _build("s8", raw, cfg, req, name, status)


def build_u8(raw: onnx.ModelProto, cfg: ModelConfig, req: Any, name: str, status: dict[str, Any]) -> onnx.ModelProto:
    """--int8-cpu: uint8 activations, the CPU runtimes' fast path."""
    return _build("u8", raw, cfg, req, name, status)
