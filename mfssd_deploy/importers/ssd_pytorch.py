"""amdegroot/ssd.pytorch's SSD300 (its VOC checkpoint ssd300_mAP_77.43_v2.pth is the most used SSD file).

The network maps one to one (71 tensors): `vgg.{0..33}` (VGG16 with pool5, fc6 and fc7 as convs),
`L2Norm.weight`, `extras.{0..7}` (conv8-11), `loc.k`, `conf.k`, heads in our channel order. The
geometry, carried in the config:

- priors: the reference SSD300's (ours) for 21 classes; for any other class count its `coco` config's
  sizes (min 21, 45, 99, 153, 207, 261 px), as `SSD.__init__` picks `(coco, voc)[num_classes == 21]`;
  all four values clipped;
- input: the 8-bit BGR image resized (cv2 INTER_LINEAR), minus (104, 117, 123), then BGR -> RGB: in
  this project's terms RGB with mean (123, 117, 104) / 255 and std 1/255.

Tolerance (docs/importing.md): its Detect keeps the top 200 per class before NMS, this project the best
2,000 (prior, class) pairs over all classes. Files of 2017 are in the pre-zip format: re-save them
with torch.save (PyTorch >= 1.6) before importing.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mfssd_deploy.config import SSD300_PRIORS, ModelConfig, NMSConfig, make_config
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.importers.common import head_classes, mapped

MEAN = (123 / 255, 117 / 255, 104 / 255)  # RGB order: the reference subtracts (104, 117, 123) from BGR
STD = (1 / 255, 1 / 255, 1 / 255)
COCO_MIN = (21, 45, 99, 153, 207, 261)
COCO_MAX = (45, 99, 153, 207, 261, 315)
_VGG = {0: "conv1_1", 2: "conv1_2", 5: "conv2_1", 7: "conv2_2", 10: "conv3_1", 12: "conv3_2", 14: "conv3_3",
        17: "conv4_1", 19: "conv4_2", 21: "conv4_3", 24: "conv5_1", 26: "conv5_2", 28: "conv5_3", 31: "fc6",
        33: "fc7"}  # fmt: skip
_EXTRAS = ("conv8_1", "conv8_2", "conv9_1", "conv9_2", "conv10_1", "conv10_2", "conv11_1", "conv11_2")


def key_map() -> dict[str, str]:
    pairs: dict[str, str] = {"L2Norm.weight": "l2norm.weight"}
    for t in ("weight", "bias"):
        for i, name in _VGG.items():
            pairs[f"vgg.{i}.{t}"] = f"backbone.{name}.conv.{t}"
        for i, name in enumerate(_EXTRAS):
            pairs[f"extras.{i}.{t}"] = f"{name}.conv.{t}"
        for k in range(6):
            pairs[f"loc.{k}.{t}"] = f"head.loc.{k}.{t}"
            pairs[f"conf.{k}.{t}"] = f"head.conf.{k}.{t}"
    return pairs


def detect(state: dict[str, Any]) -> bool:
    return "L2Norm.weight" in state and "vgg.0.weight" in state and "extras.7.weight" in state


def num_classes(state: dict[str, Any]) -> int:
    return head_classes(state, "conf.0.weight", SSD300_PRIORS.boxes_per_location[0])


def coco_names() -> tuple[str, ...]:
    raise MfssdError("--classes coco names torchvision's 91-entry list; give ssd.pytorch's classes as a file")


def convert(state: dict[str, Any], class_names: tuple[str, ...]) -> tuple[ModelConfig, dict[str, Any]]:
    k = num_classes(state)
    ours = mapped(state, key_map(), "ssd.pytorch SSD300", k, class_names)
    priors = SSD300_PRIORS if k == 21 else replace(SSD300_PRIORS, min_sizes=COCO_MIN, max_sizes=COCO_MAX)
    cfg = replace(make_config("ssd300", k, class_names), priors=priors, mean=MEAN, std=STD,
                  nms=NMSConfig(conf_thresh=0.01, iou_thresh=0.45, max_det=200))  # fmt: skip
    cfg.validate()
    return cfg, ours
