"""One JSON-serialisable model config: everything needed to rebuild a model and its processing.

Checkpoints, ONNX metadata and engine metadata all carry this dict, so a pruned model (other
channel widths) or a model for other classes is an ordinary config, never a pickled module.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from mfssd_deploy.errors import MfssdError

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip

VARIANTS: tuple[str, ...] = ("ssd300", "fssd", "mfssd", "mfssd_bn")

# Reduced VGG16 (SSD's): 13 3x3 convs, then fc6 (3x3, dilation 6) and fc7 (1x1) as convs.
VGG_WIDTHS: dict[str, int] = {
    "conv1_1": 64, "conv1_2": 64,
    "conv2_1": 128, "conv2_2": 128,
    "conv3_1": 256, "conv3_2": 256, "conv3_3": 256,
    "conv4_1": 512, "conv4_2": 512, "conv4_3": 512,
    "conv5_1": 512, "conv5_2": 512, "conv5_3": 512,
    "fc6": 1024, "fc7": 1024,
}  # fmt: skip
VGG_CONVS: tuple[str, ...] = tuple(k for k in VGG_WIDTHS if k.startswith("conv"))

_PYRAMID = {"pyr0": 512, "pyr1": 512, "pyr2": 256, "pyr3": 256, "pyr4": 256, "pyr5": 256}

BASE_WIDTHS: dict[str, dict[str, int]] = {
    "ssd300": {
        **VGG_WIDTHS,
        "conv8_1": 256, "conv8_2": 512, "conv9_1": 128, "conv9_2": 256,
        "conv10_1": 128, "conv10_2": 256, "conv11_1": 128, "conv11_2": 256,
    },
    "fssd": {
        **VGG_WIDTHS,
        "conv6_1": 256, "conv6_2": 512, "conv7_1": 128, "conv7_2": 256,
        "fuse_a": 256, "fuse_b": 256, "fuse_c": 256,
        **_PYRAMID,
    },
    "mfssd": {**VGG_WIDTHS, "fuse_a": 512, "fuse_b": 256, "fuse_c": 256, **_PYRAMID},
    "mfssd_bn": {**VGG_WIDTHS, "fuse_a": 512, "fuse_b": 256, "fuse_c": 256, **_PYRAMID},
}  # fmt: skip


@dataclass(frozen=True)
class PriorSpec:
    """SSD prior boxes (VOC_300 of the FSSD/RFBNet reference code)."""

    image_size: int = 300
    feature_maps: tuple[int, ...] = (38, 19, 10, 5, 3, 1)
    steps: tuple[int, ...] = (8, 16, 32, 64, 100, 300)
    min_sizes: tuple[float, ...] = (30, 60, 111, 162, 213, 264)
    max_sizes: tuple[float, ...] = (60, 111, 162, 213, 264, 315)
    aspect_ratios: tuple[tuple[int, ...], ...] = ((2, 3), (2, 3), (2, 3), (2, 3), (2,), (2,))
    variances: tuple[float, float] = (0.1, 0.2)
    clip: bool = True

    @property
    def boxes_per_location(self) -> tuple[int, ...]:
        return tuple(2 + 2 * len(ar) for ar in self.aspect_ratios)

    @property
    def num_priors(self) -> int:
        return sum(f * f * n for f, n in zip(self.feature_maps, self.boxes_per_location, strict=True))


SSD300_PRIORS = PriorSpec(aspect_ratios=((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)))
FSSD_PRIORS = PriorSpec()


@dataclass(frozen=True)
class NMSConfig:
    """Reference SSD post-processing settings, plus `pre_nms_topk`: per image, only the best
    pre_nms_topk (prior, class) scores above conf_thresh enter NMS. TensorRT's NMS layer does
    exactly this with its TopK box limit (at most 5000; 2000 on Jetson Nano/TX2), so a cap of 2000
    makes PyTorch, ONNX Runtime and every TensorRT target select the same candidates; it also bounds
    NMS time when a weak model scores everything above 0.01 (the reference SSD code capped at 200
    per class for the same reason)."""

    conf_thresh: float = 0.01
    iou_thresh: float = 0.45
    max_det: int = 200
    pre_nms_topk: int = 2000

    def override(
        self,
        conf: float | None = None,
        iou: float | None = None,
        max_det: int | None = None,
        pre_nms_topk: int | None = None,
    ) -> NMSConfig:
        """These settings with the given ones replaced, validated: the one place a user's conf / iou /
        max_det are checked (Detector, export, evaluation)."""
        nms = NMSConfig(
            conf_thresh=self.conf_thresh if conf is None else float(conf),
            iou_thresh=self.iou_thresh if iou is None else float(iou),
            max_det=self.max_det if max_det is None else int(max_det),
            pre_nms_topk=self.pre_nms_topk if pre_nms_topk is None else int(pre_nms_topk),
        )
        if not (0 <= nms.conf_thresh < 1 and 0 < nms.iou_thresh <= 1 and 0 < nms.max_det <= nms.pre_nms_topk):
            raise MfssdError(
                f"invalid NMS settings conf={nms.conf_thresh}, iou={nms.iou_thresh}, max_det={nms.max_det}, "
                f"pre_nms_topk={nms.pre_nms_topk}: need 0 <= conf < 1, 0 < iou <= 1, 0 < max_det <= pre_nms_topk"
            )
        return nms


@dataclass(frozen=True)
class ModelConfig:
    """The whole description of a model. `num_classes` counts the background class."""

    variant: str
    num_classes: int
    class_names: tuple[str, ...]
    widths: dict[str, int]
    priors: PriorSpec
    input_size: int = 300
    # ImageNet statistics on [0,1] RGB: what torchvision's VGG16(-BN) weights were trained with.
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    color: str = "rgb"
    nms: NMSConfig = field(default_factory=NMSConfig)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["widths"] = dict(self.widths)
        return _lists(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        try:
            pri = d["priors"]
            priors = PriorSpec(
                image_size=int(pri["image_size"]),
                feature_maps=tuple(int(x) for x in pri["feature_maps"]),
                steps=tuple(int(x) for x in pri["steps"]),
                min_sizes=tuple(float(x) for x in pri["min_sizes"]),
                max_sizes=tuple(float(x) for x in pri["max_sizes"]),
                aspect_ratios=tuple(tuple(int(a) for a in ar) for ar in pri["aspect_ratios"]),
                variances=(float(pri["variances"][0]), float(pri["variances"][1])),
                clip=bool(pri["clip"]),
            )
            cfg = cls(
                variant=str(d["variant"]),
                num_classes=int(d["num_classes"]),
                class_names=tuple(str(c) for c in d["class_names"]),
                widths={str(k): int(v) for k, v in d["widths"].items()},
                priors=priors,
                input_size=int(d.get("input_size", 300)),
                mean=_triple(d.get("mean", (0.485, 0.456, 0.406))),
                std=_triple(d.get("std", (0.229, 0.224, 0.225))),
                color=str(d.get("color", "rgb")),
                nms=NMSConfig(**d.get("nms", {})),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise MfssdError(f"model config is malformed ({type(exc).__name__}: {exc})") from exc
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.variant not in VARIANTS:
            raise MfssdError(f"unknown model variant {self.variant!r}: choose one of {', '.join(VARIANTS)}")
        if self.num_classes < 2:
            raise MfssdError(f"num_classes={self.num_classes}: it counts the background, so it must be >= 2")
        if len(self.class_names) != self.num_classes - 1:
            raise MfssdError(
                f"{len(self.class_names)} class names for num_classes={self.num_classes}: "
                "give one name per foreground class (num_classes - 1)"
            )
        missing = set(BASE_WIDTHS[self.variant]) - set(self.widths)
        extra = set(self.widths) - set(BASE_WIDTHS[self.variant])
        if missing or extra:
            raise MfssdError(
                f"widths for {self.variant} do not match its layers: missing {sorted(missing)}, unknown {sorted(extra)}"
            )
        bad = {k: v for k, v in self.widths.items() if v < 1}
        if bad:
            raise MfssdError(f"every layer needs at least one channel, got {bad}")
        if self.input_size != self.priors.image_size:
            raise MfssdError(
                f"input_size {self.input_size} differs from the priors' image_size {self.priors.image_size}"
            )

    def with_widths(self, widths: dict[str, int]) -> ModelConfig:
        cfg = replace(self, widths=dict(widths))
        cfg.validate()
        return cfg


def _triple(v: Any) -> tuple[float, float, float]:
    a, b, c = (float(x) for x in v)
    return (a, b, c)


def _lists(obj: Any) -> Any:
    """Tuples to lists, so a config round-trips through JSON unchanged."""
    if isinstance(obj, dict):
        return {k: _lists(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_lists(v) for v in obj]
    return obj


def scale_width(channels: int, width: float, divisor: int = 8) -> int:
    """Channels for a width multiplier: a multiple of `divisor`, at least `divisor`."""
    if width == 1.0:
        return channels
    return max(divisor, math.floor(channels * width / divisor + 0.5) * divisor)


# Named configs of the paper's comparison that are an architecture plus other data, not another class:
# SSD300 as the paper trained it for Table II (6 boxes per location on conv4_3 too: 11,620 priors, the
# FSSD prior set, instead of the classic 8,732), and the fusion-ratio ablation MFSSD-BN 1:1:1 (branch A
# with 256 channels instead of 512), which isolates the paper's "more channels for conv4_3" choice.
PRESETS: dict[str, tuple[str, dict[str, int], str | None]] = {  # name -> (variant, width overrides, priors)
    "ssd300_11620": ("ssd300", {}, "fssd"),
    "mfssd_bn_111": ("mfssd_bn", {"fuse_a": 256}, None),  # None: the variant's own prior set
}


def make_config(
    variant: str = "mfssd_bn",
    num_classes: int = 21,
    class_names: tuple[str, ...] | list[str] | None = None,
    width: float = 1.0,
    widths: dict[str, int] | None = None,
) -> ModelConfig:
    """Config for a variant or a PRESETS name: base widths scaled by `width`, or an explicit per-layer
    `widths` dict."""
    overrides: dict[str, int] = {}
    prior_set: str | None = None
    if variant in PRESETS:
        variant, overrides, prior_set = PRESETS[variant]
    if variant not in VARIANTS:
        raise MfssdError(f"unknown model variant {variant!r}: choose one of {', '.join((*VARIANTS, *PRESETS))}")
    if width <= 0:
        raise MfssdError(f"width multiplier must be > 0, got {width}")
    if class_names is None:
        if num_classes == len(VOC_CLASSES) + 1:
            class_names = VOC_CLASSES
        else:
            class_names = tuple(f"class{i}" for i in range(1, num_classes))
    if widths is None:
        widths = {k: scale_width(v, width) for k, v in {**BASE_WIDTHS[variant], **overrides}.items()}
    cfg = ModelConfig(
        variant=variant,
        num_classes=num_classes,
        class_names=tuple(class_names),
        widths=dict(widths),
        priors=FSSD_PRIORS if (prior_set or ("ssd300" if variant == "ssd300" else "fssd")) == "fssd" else SSD300_PRIORS,
    )
    cfg.validate()
    return cfg
