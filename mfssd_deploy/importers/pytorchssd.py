"""lzx1413/PytorchSSD's FSSD300 (`FSSD_vgg`, the FSSD authors' code that the paper builds on).

The network maps one to one onto this project's FSSD (85 tensors): `base.{0..33}` (VGG16 with pool5,
fc6, fc7), `extras.{0..3}` (conv6_1, conv6_2, conv7_1, conv7_2), `ft_module.{0,1,2}.conv` (the fusion's
1x1 convs on conv4_3, fc7 and conv7_2), `fea_bn`, `pyramid_ext.{0..5}.conv`, `loc.k`, `conf.k`. Its
priors are this project's FSSD set. Input: BGR minus (104, 117, 123), std 1: in this project's terms
colour "bgr", mean (104, 117, 123) / 255, std 1/255. Priors: this project's FSSD set (its VOC_300), or
for an 81-class (COCO) model its COCO_300 sizes, as its train_test.py picks them by dataset.

The fusion's bilinear upsampling was align_corners=True under the PyTorch 0.2-0.4 the authors trained
with (the repository's 0.4 branch hard-codes it) and is False under later PyTorch: the weights cannot
tell which, so the import asks (`--upsample-align-corners`, default true for this source). Old files
may carry an unused `L2Norm.weight` (dropped), lack `num_batches_tracked` (filled) or have `module.`
prefixes (stripped before this module sees them).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from mfssd_deploy.config import FSSD_PRIORS, ModelConfig, NMSConfig, make_config
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.importers.common import head_classes, mapped

MEAN = (104 / 255, 117 / 255, 123 / 255)  # BGR order, as the reference feeds the network
STD = (1 / 255, 1 / 255, 1 / 255)
ALIGN_CORNERS_DEFAULT = True  # the released weights were trained under PyTorch 0.2-0.4
# Its train_test.py picks the prior set by dataset: COCO_300's sizes for COCO (81 classes), VOC_300's
# (this project's FSSD set) otherwise.
COCO_CLASSES = 81
COCO_MIN = (21, 45, 99, 153, 207, 261)
COCO_MAX = (45, 99, 153, 207, 261, 315)
_VGG = {0: "conv1_1", 2: "conv1_2", 5: "conv2_1", 7: "conv2_2", 10: "conv3_1", 12: "conv3_2", 14: "conv3_3",
        17: "conv4_1", 19: "conv4_2", 21: "conv4_3", 24: "conv5_1", 26: "conv5_2", 28: "conv5_3", 31: "fc6",
        33: "fc7"}  # fmt: skip
_EXTRAS = ("conv6_1", "conv6_2", "conv7_1", "conv7_2")
_FUSE = ("fuse_a", "fuse_b", "fuse_c")


def key_map() -> dict[str, str]:
    pairs: dict[str, str] = {}
    for t in ("weight", "bias"):
        for i, name in _VGG.items():
            pairs[f"base.{i}.{t}"] = f"backbone.{name}.conv.{t}"
        for i, name in enumerate(_EXTRAS):
            pairs[f"extras.{i}.{t}"] = f"{name}.conv.{t}"
        for i, name in enumerate(_FUSE):
            pairs[f"ft_module.{i}.conv.{t}"] = f"{name}.conv.{t}"
        for k in range(6):
            pairs[f"pyramid_ext.{k}.conv.{t}"] = f"pyramid.pyr{k}.conv.{t}"
            pairs[f"loc.{k}.{t}"] = f"head.loc.{k}.{t}"
            pairs[f"conf.{k}.{t}"] = f"head.conf.{k}.{t}"
    for t in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        pairs[f"fea_bn.{t}"] = f"fuse_bn.{t}"
    return pairs


def detect(state: dict[str, Any]) -> bool:
    return "ft_module.0.conv.weight" in state and "pyramid_ext.0.conv.weight" in state


def num_classes(state: dict[str, Any]) -> int:
    return head_classes(state, "conf.0.weight", FSSD_PRIORS.boxes_per_location[0])


def coco_names() -> tuple[str, ...]:
    raise MfssdError("--classes coco names torchvision's 91-entry list; give PytorchSSD's classes as a file")


def convert(state: dict[str, Any], class_names: tuple[str, ...],
            align_corners: bool = ALIGN_CORNERS_DEFAULT) -> tuple[ModelConfig, dict[str, Any]]:  # fmt: skip
    state = {k: v for k, v in state.items() if k != "L2Norm.weight"}  # built but unused by FSSD_vgg
    state.setdefault("fea_bn.num_batches_tracked", torch.tensor(0))  # files from before PyTorch 0.4.1
    k = num_classes(state)
    ours = mapped(state, key_map(), "PytorchSSD FSSD300", k, class_names)
    priors = replace(FSSD_PRIORS, min_sizes=COCO_MIN, max_sizes=COCO_MAX) if k == COCO_CLASSES else FSSD_PRIORS
    cfg = replace(make_config("fssd", k, class_names), priors=priors, mean=MEAN, std=STD, color="bgr",
                  nms=NMSConfig(conf_thresh=0.01, iou_thresh=0.45, max_det=200),
                  upsample_align_corners=align_corners)  # fmt: skip
    cfg.validate()
    return cfg, ours
