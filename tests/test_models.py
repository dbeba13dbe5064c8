from __future__ import annotations

import json

import pytest
import torch

from mfssd_deploy.config import BASE_WIDTHS, ModelConfig, make_config, scale_width
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.models import build_from_config, build_model

# The paper's counts for 21 classes (docs/model.md), to the unit.
PAPER_PARAMS = {"ssd300": 26_285_486, "fssd": 34_132_960, "mfssd": 33_709_664, "mfssd_bn": 33_713_888}


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("variant", sorted(PAPER_PARAMS))
def test_exact_parameter_counts(variant: str) -> None:
    assert n_params(build_model(variant, 21)) == PAPER_PARAMS[variant]


def test_mfssd_bn_differs_by_the_13_vgg_bns() -> None:
    # Each of the 13 VGG convs loses its bias (C) and gains BN gamma+beta (2C): +C per conv.
    vgg_channels = sum(v for k, v in BASE_WIDTHS["mfssd_bn"].items() if k.startswith("conv"))
    assert PAPER_PARAMS["mfssd_bn"] - PAPER_PARAMS["mfssd"] == vgg_channels == 4224
    bn = build_model("mfssd_bn")
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in bn.backbone.modules()) == 13
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in build_model("mfssd").backbone.modules()) == 0


@pytest.mark.parametrize(
    ("variant", "priors"), [("ssd300", 8732), ("fssd", 11620), ("mfssd", 11620), ("mfssd_bn", 11620)]
)
def test_output_shapes(variant: str, priors: int) -> None:
    model = build_model(variant, num_classes=7, width=0.125).eval()
    with torch.no_grad():
        loc, conf = model(torch.randn(2, 3, 300, 300))
    assert loc.shape == (2, priors, 4)
    assert conf.shape == (2, priors, 7)
    assert make_config(variant).priors.num_priors == priors


def test_width_multiplier_scales_every_layer() -> None:
    cfg = make_config("mfssd_bn", width=0.25)
    assert cfg.widths["conv1_1"] == 16 and cfg.widths["fc7"] == 256 and cfg.widths["pyr5"] == 64
    assert scale_width(3, 0.1) == 8  # never below one divisor
    m = build_from_config(cfg)
    assert m.backbone.conv1_1.conv.out_channels == 16
    assert m.fuse_bn.num_features == cfg.widths["fuse_a"] + cfg.widths["fuse_b"] + cfg.widths["fuse_c"]


def test_arbitrary_per_layer_widths_build_and_run() -> None:
    # What pruning produces: any channel count per layer, not multiples of anything.
    g = torch.Generator().manual_seed(1)
    widths = {k: int(torch.randint(3, 40, (1,), generator=g)) for k in BASE_WIDTHS["mfssd_bn"]}
    model = build_model("mfssd_bn", num_classes=5, widths=widths).eval()
    for name, c in widths.items():
        if name.startswith(("conv", "fc")):
            assert getattr(model.backbone, name).conv.out_channels == c
    assert model.pyramid["pyr3"].conv.out_channels == widths["pyr3"]
    assert model.head.loc[3].in_channels == widths["pyr3"]
    with torch.no_grad():
        loc, conf = model(torch.randn(1, 3, 300, 300))
    assert loc.shape == (1, 11620, 4) and conf.shape == (1, 11620, 5)


def test_config_round_trips_through_json() -> None:
    cfg = make_config("fssd", num_classes=4, class_names=["a", "b", "c"], width=0.5)
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"variant": "yolo"}, "unknown model variant 'yolo'"),
        ({"num_classes": 1}, "num_classes=1"),
        ({"num_classes": 4, "class_names": ["a"]}, "1 class names for num_classes=4"),
        ({"widths": {"conv1_1": 8}}, "missing"),
        ({"width": 0}, "width multiplier must be > 0"),
    ],
)
def test_bad_configs_are_one_line_errors(kwargs: dict, fragment: str) -> None:
    with pytest.raises(MfssdError, match=fragment) as exc:
        make_config(**kwargs)
    assert "\n" not in str(exc.value)


def test_mfssd_fusion_upsamples_to_conv4_3_size() -> None:
    model = build_model("mfssd", width=0.125).eval()
    seen: dict[str, tuple[int, ...]] = {}

    def hook(m: torch.nn.Module, i: object, o: torch.Tensor) -> None:
        seen["shape"] = tuple(o.shape)

    model.fuse_bn.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.randn(1, 3, 300, 300))
    cfg = model.config
    assert seen["shape"] == (1, cfg.widths["fuse_a"] + cfg.widths["fuse_b"] + cfg.widths["fuse_c"], 38, 38)


def test_presets_of_the_paper_comparison() -> None:
    """SSD300 with 11,620 priors: 2 more boxes per conv4_3 location than the classic 8,732 model, i.e.
    3x3x512 weights + bias for 2x4 loc and 2x21 conf outputs more; MFSSD-BN 1:1:1 halves branch A."""
    from mfssd_deploy.config import FSSD_PRIORS

    def n(m: torch.nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    classic, paper = build_model("ssd300", 21), build_model("ssd300_11620", 21)
    assert paper.config.priors == FSSD_PRIORS and paper.config.priors.num_priors == 11620
    assert n(paper) - n(classic) == (3 * 3 * 512 + 1) * (2 * 4 + 2 * 21)
    ablation, bn = build_model("mfssd_bn_111", 21), build_model("mfssd_bn", 21)
    assert ablation.config.variant == "mfssd_bn" and ablation.config.priors == bn.config.priors
    assert (
        ablation.config.widths["fuse_a"] == 256 == ablation.config.widths["fuse_b"] == ablation.config.widths["fuse_c"]
    )
    assert build_model("mfssd_bn_111", 21, width=0.25).config.widths["fuse_a"] == 64


def test_l2norm_has_finite_gradients_at_an_all_zero_location() -> None:
    """The reference formula's sqrt has an infinite gradient at 0: SSD300 training went NaN (dead ReLU columns)."""
    from mfssd_deploy.models.layers import L2Norm

    x = torch.rand(2, 8, 5, 5)
    ref = x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10) * 20.0  # the reference SSD's forward
    layer = L2Norm(8)
    torch.testing.assert_close(layer(x), ref)
    x = x.clone()
    x[:, :, 2, 3] = 0.0
    x.requires_grad_(True)
    layer(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    x.grad = None
    (x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)).sum().backward()
    assert x.grad is not None and not torch.isfinite(x.grad).all()  # what the old formula did
