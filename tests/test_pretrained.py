"""ImageNet VGG16(-BN) weights in torchvision format into our backbones, exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from mfssd_deploy.errors import MfssdError
from mfssd_deploy.models import build_model
from mfssd_deploy.pretrained import load_vgg16_imagenet


def randomised(net: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)  # type: ignore[union-attr]
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return net.eval()


def relu5_3(features: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """torchvision's features up to relu5_3 (drop the final pool)."""
    return features[:-1](x)


@pytest.mark.parametrize(
    ("tv_name", "variant"),
    [
        ("vgg16_bn", "mfssd_bn"),  # bias folded into BN running_mean
        ("vgg16", "mfssd"),  # plain copy
        ("vgg16_bn", "mfssd"),  # BN folded into a biased conv
        ("vgg16", "mfssd_bn"),  # identity BN that adds the bias
    ],
)
def test_folded_and_unfolded_backbones_agree(tmp_path: Path, tv_name: str, variant: str) -> None:
    tv = randomised(getattr(torchvision.models, tv_name)(weights=None))
    path = tmp_path / f"{tv_name}.pth"
    torch.save(tv.state_dict(), path)
    model = build_model(variant).eval()
    loaded = load_vgg16_imagenet(model, path)
    assert len(loaded) == 13
    x = torch.randn(1, 3, 64, 64)  # divisible by 16: SSD's ceil-mode pool3 agrees with VGG's
    with torch.no_grad():
        _, ours, _ = model.backbone(x)
        ref = relu5_3(tv.features, x)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


def test_narrow_model_and_wrong_file_are_clear_errors(tmp_path: Path) -> None:
    tv = torchvision.models.vgg16_bn(weights=None)
    path = tmp_path / "vgg16_bn.pth"
    torch.save(tv.state_dict(), path)
    with pytest.raises(MfssdError, match=r"backbone.conv1_1.conv.weight is \[16, 3, 3, 3\]"):
        load_vgg16_imagenet(build_model("mfssd_bn", width=0.25), path)
    other = tmp_path / "resnet.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), other)
    with pytest.raises(MfssdError, match="not a torchvision VGG16 state_dict"):
        load_vgg16_imagenet(build_model("mfssd_bn"), other)
