"""PyTorch checkpoint -> ONNX: raw (loc, scores) and end2end layouts, simplified, with metadata."""

from __future__ import annotations

import io
import json
import warnings
from typing import Any, cast

import numpy as np
import onnx
import torch
from torch import nn

from mfssd_deploy import __version__
from mfssd_deploy.artifacts import INPUT, METADATA_KEY, OUTPUTS, ArtifactMeta, proto_meta
from mfssd_deploy.config import ModelConfig
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.exporters.end2end import append_end2end
from mfssd_deploy.geometry.priors import make_priors
from mfssd_deploy.models import config_of

MIN_OPSET, MAX_OPSET = 13, 20  # ReduceSum with axes input needs 13; TensorRT 8.5/8.6 parse up to 17


class _RawOutputs(nn.Module):
    """images -> (loc, scores): the softmax lives in the graph so every backend gets probabilities."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, conf = self.model(images)
        return loc, torch.softmax(conf, dim=-1)


def export_raw(model: nn.Module, opset: int = 17) -> onnx.ModelProto:
    """Trace with the TorchScript exporter (dynamo=False): a plain static graph, batch axis dynamic, H and W
    fixed at the config's input size (the end2end graph's priors are constants for that size)."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise MfssdError(f"--opset {opset} is out of range: use {MIN_OPSET}..{MAX_OPSET} (TensorRT 8.5/8.6 need <= 17)")
    cfg = config_of(model)
    wrapper = _RawOutputs(model).eval()
    width, height = cfg.input_wh  # 300x300, or the camera resolution of mfssd-export --input-size WxH
    x = torch.zeros(1, 3, height, width)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about int() of the fusion size: constant by design
        torch.onnx.export(
            wrapper,
            (x,),
            cast(Any, buf),  # a file-like object works; the annotation only names paths
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT],
            output_names=["loc", "scores"],
            do_constant_folding=True,
            dynamic_axes={name: {0: "batch"} for name in (INPUT, *OUTPUTS["raw"])},
        )
    return onnx.load_from_string(buf.getvalue())


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxslim: constant folding and dead-node removal (fewer Shape/Gather chains for TensorRT)."""
    import onnxslim

    return onnxslim.slim(model)


def make_metadata(
    cfg: ModelConfig, layout: str, precision: str, source_sha256: str | None, **extra: Any
) -> dict[str, Any]:
    """An exported file's metadata, through the contract's one writer (artifacts.ArtifactMeta)."""
    meta = ArtifactMeta(layout, precision, cfg, source_sha256, __version__, extra)
    return meta.to_dict()


def set_metadata(model: onnx.ModelProto, meta: dict[str, Any]) -> None:
    for p in list(model.metadata_props):
        if p.key == METADATA_KEY:
            model.metadata_props.remove(p)
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps(meta)


def read_metadata(model: onnx.ModelProto) -> dict[str, Any]:
    """The metadata of an ONNX graph in memory (the exporter's own checks); files: artifacts.read_meta."""
    return proto_meta(model, "the ONNX model")


def to_end2end(raw: onnx.ModelProto, cfg: ModelConfig) -> onnx.ModelProto:
    nms = cfg.nms
    return append_end2end(
        raw,
        np.asarray(make_priors(cfg.priors)),
        cfg.priors.variances,
        cfg.num_classes,
        conf_thresh=nms.conf_thresh,
        iou_thresh=nms.iou_thresh,
        max_det=nms.max_det,
        pre_nms_topk=nms.pre_nms_topk,
        wh_clamp=nms.wh_clamp,
        clip_before_nms=nms.clip_before_nms,
    )


def check(model: onnx.ModelProto) -> None:
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise MfssdError(f"the exported ONNX graph is invalid: {str(exc).splitlines()[0]}") from exc
