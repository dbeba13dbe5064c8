"""torchvision's `ssd300_vgg16` (its detection models and reference train.py) as this project's SSD300.

The network maps one to one (71 tensors): VGG16 `features` up to conv4_3, `scale_weight` (L2Norm),
`extra.0` (conv5_x, then fc6/fc7 inside `extra.0.7`), `extra.1-4` (conv8-11), and the heads, whose
channel order (anchor * K + k, background 0) is ours. What differs is the geometry, carried in the
config so that every artifact made from the import decodes as torchvision does:

- priors from scales 0.07..1.05 (min sizes 21, 45, 99, 153, 207, 261 px; max 45 .. 315) with w and h
  clamped only (`PriorSpec.clip = "wh"`), the SSD300 aspect ratios and steps;
- input 0..1 RGB normalised by mean (0.48235, 0.45882, 0.40784) and std 1/255;
- the box coder's upper bound on the log-size offsets, log(1000 / 16) (`NMSConfig.wh_clamp`);
- score > 0.01, NMS IoU 0.45, 200 detections: torchvision's defaults.

- boxes clipped to the image before NMS (`NMSConfig.clip_before_nms`).

Known tolerance (docs/importing.md): torchvision keeps the top 400 candidates per class before NMS, the
graph here the best 2,000 (prior, class) pairs over all classes (TensorRT's NMS layer has no per-class
top-k); with fewer candidates than those caps the detections are the same.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from mfssd_deploy.config import SSD300_PRIORS, ModelConfig, NMSConfig, PriorSpec, make_config
from mfssd_deploy.importers.common import head_classes, mapped

NAME = "torchvision"
SCALES = (0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05)
MEAN = (0.48235, 0.45882, 0.40784)
STD = (1 / 255, 1 / 255, 1 / 255)
WH_CLAMP = math.log(1000.0 / 16)
_VGG = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1", "conv4_2", "conv4_3")
_VGG_INDEX = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21)  # their positions in torchvision's vgg16().features


def key_map() -> dict[str, str]:
    """torchvision key -> our key, for every tensor of ssd300_vgg16."""
    pairs: dict[str, str] = {}

    def conv(src: str, dst: str) -> None:
        for t in ("weight", "bias"):
            pairs[f"{src}.{t}"] = f"{dst}.conv.{t}"

    for i, name in zip(_VGG_INDEX, _VGG, strict=True):
        conv(f"backbone.features.{i}", f"backbone.{name}")
    pairs["backbone.scale_weight"] = "l2norm.weight"
    for i, name in ((1, "conv5_1"), (3, "conv5_2"), (5, "conv5_3")):
        conv(f"backbone.extra.0.{i}", f"backbone.{name}")
    conv("backbone.extra.0.7.1", "backbone.fc6")
    conv("backbone.extra.0.7.3", "backbone.fc7")
    for k, n in enumerate((8, 9, 10, 11), 1):
        conv(f"backbone.extra.{k}.0", f"conv{n}_1")
        conv(f"backbone.extra.{k}.2", f"conv{n}_2")
    for k in range(6):
        for t in ("weight", "bias"):
            pairs[f"head.regression_head.module_list.{k}.{t}"] = f"head.loc.{k}.{t}"
            pairs[f"head.classification_head.module_list.{k}.{t}"] = f"head.conf.{k}.{t}"
    return pairs


def detect(state: dict[str, Any]) -> bool:
    return "backbone.scale_weight" in state and "head.classification_head.module_list.0.weight" in state


def num_classes(state: dict[str, Any]) -> int:
    """Classes (background included) from the first classification head: 4 anchors there."""
    return head_classes(state, "head.classification_head.module_list.0.weight", SSD300_PRIORS.boxes_per_location[0])


def coco_names() -> tuple[str, ...]:
    """torchvision's 91-entry COCO list less the background, its "N/A" placeholders made unique (N/A-12)."""
    from torchvision.models.detection.ssd import SSD300_VGG16_Weights

    cats = SSD300_VGG16_Weights.COCO_V1.meta["categories"][1:]
    return tuple(f"N/A-{i}" if c == "N/A" else str(c) for i, c in enumerate(cats, 1))


def convert(state: dict[str, Any], class_names: tuple[str, ...]) -> tuple[ModelConfig, dict[str, Any]]:
    """(config, our state_dict) of a torchvision ssd300_vgg16 state_dict."""
    k = num_classes(state)
    ours = mapped(state, key_map(), "torchvision ssd300_vgg16", k, class_names)
    base = make_config("ssd300", k, class_names)
    priors = replace(SSD300_PRIORS, min_sizes=tuple(300 * s for s in SCALES[:-1]),
                     max_sizes=tuple(300 * s for s in SCALES[1:]), clip="wh")  # fmt: skip
    cfg = replace(base, priors=priors, mean=MEAN, std=STD, resize="float",
                  nms=NMSConfig(conf_thresh=0.01, iou_thresh=0.45, max_det=200, wh_clamp=WH_CLAMP,
                                clip_before_nms=True))  # fmt: skip
    cfg.validate()
    return cfg, ours


def describe(state: dict[str, Any]) -> str:
    return "torchvision ssd300_vgg16 (backbone.features.*, backbone.extra.*, head.*_head.module_list.*)"


__all__ = ["NAME", "PriorSpec", "coco_names", "convert", "detect", "key_map", "num_classes"]
