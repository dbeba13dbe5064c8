"""ImageNet VGG16 / VGG16-BN weights (torchvision format, a local file) into our backbones.

Every combination is exact in eval mode: a conv bias folds into a following BN
(running_mean -= bias), a BN folds into a biased conv, and a plain conv becomes conv + identity BN.
fc6/fc7 are SSD's atrous convs and have no ImageNet counterpart here: they keep their init.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import nn

from mfssd_deploy.config import VGG_CONVS
from mfssd_deploy.errors import MfssdError


def _torchvision_convs(sd: dict[str, torch.Tensor]) -> list[tuple[int, bool]]:
    """Indices of the 13 convs in `features`, and whether a BN follows each."""
    idx = sorted({int(m.group(1)) for k in sd if (m := re.fullmatch(r"features\.(\d+)\.weight", k))})
    convs = [i for i in idx if sd[f"features.{i}.weight"].ndim == 4]
    return [(i, f"features.{i + 1}.running_mean" in sd) for i in convs]


def load_vgg16_imagenet(model: nn.Module, path: str | os.PathLike[str]) -> list[str]:
    """Load a torchvision `vgg16` / `vgg16_bn` state_dict file into `model.backbone`; returns layers set."""
    p = Path(path)
    if not p.is_file():
        raise MfssdError(f"VGG16 weights not found: {p} (a torchvision vgg16 or vgg16_bn .pth file)")
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MfssdError(f"{p} is not a readable torchvision state_dict ({type(exc).__name__})") from exc
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    convs = _torchvision_convs(sd) if isinstance(sd, dict) else []
    if len(convs) != len(VGG_CONVS):
        raise MfssdError(f"{p} is not a torchvision VGG16 state_dict: found {len(convs)} convs in features, need 13")
    backbone = model.backbone
    loaded = []
    with torch.no_grad():
        for name, (i, has_bn) in zip(VGG_CONVS, convs, strict=True):
            block = getattr(backbone, name)
            w = sd[f"features.{i}.weight"].float()
            b = sd[f"features.{i}.bias"].float()
            if tuple(block.conv.weight.shape) != tuple(w.shape):
                raise MfssdError(
                    "ImageNet VGG16 weights fit only full-width backbones: "
                    f"layer backbone.{name}.conv.weight is "
                    f"{list(block.conv.weight.shape)} in the model but {list(w.shape)} in {p}"
                )
            if has_bn:
                pre = f"features.{i + 1}."
                gamma, beta = sd[pre + "weight"].float(), sd[pre + "bias"].float()
                mean, var = sd[pre + "running_mean"].float(), sd[pre + "running_var"].float()
            if hasattr(block, "bn"):
                block.conv.weight.copy_(w)
                if has_bn:
                    block.bn.weight.copy_(gamma)
                    block.bn.bias.copy_(beta)
                    block.bn.running_mean.copy_(mean - b)  # BN(conv(x) + b) with mean m == BN'(conv(x)), m' = m - b
                    block.bn.running_var.copy_(var)
                else:  # identity BN that adds the bias: (y + b - 0) / sqrt(var + eps) with var + eps = 1
                    block.bn.weight.fill_(1.0)
                    block.bn.bias.zero_()
                    block.bn.running_mean.copy_(-b)
                    block.bn.running_var.fill_(1.0 - block.bn.eps)
            elif has_bn:  # fold BN into the biased conv
                scale = gamma / torch.sqrt(var + 1e-5)
                block.conv.weight.copy_(w * scale[:, None, None, None])
                block.conv.bias.copy_((b - mean) * scale + beta)
            else:
                block.conv.weight.copy_(w)
                block.conv.bias.copy_(b)
            loaded.append(f"backbone.{name}")
    return loaded
