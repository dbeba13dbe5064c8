"""One JSON-serialisable model config: everything needed to rebuild a model and its processing.

Checkpoints, ONNX metadata and engine metadata all carry this dict, so a pruned model (other
channel widths) or a model for other classes is an ordinary config, never a pickled module.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from mfssd_deploy.classes import VOC_CLASSES  # re-exported: the one list lives in classes.py
from mfssd_deploy.errors import MfssdError

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


Size = int | tuple[int, int]  # a square side, or (width, height) in pixels


@dataclass(frozen=True)
class PriorSpec:
    """SSD prior boxes (VOC_300 of the FSSD/RFBNet reference code), defined in pixels of the network input.

    A square input keeps the reference form: `image_size` one side, `feature_maps` one side per source layer,
    `steps` one pixel stride per layer. Any other input (ModelConfig.at_input_size) holds pairs: `image_size`
    (width, height), `feature_maps` (fh, fw) as the tensors are shaped, `steps` (step_x, step_y). Use
    size_wh / grid / step_xy to read either form.
    """

    image_size: Size = 300
    feature_maps: tuple[int | tuple[int, int], ...] = (38, 19, 10, 5, 3, 1)
    steps: tuple[float | tuple[float, float], ...] = (8, 16, 32, 64, 100, 300)
    min_sizes: tuple[float, ...] = (30, 60, 111, 162, 213, 264)
    max_sizes: tuple[float, ...] = (60, 111, 162, 213, 264, 315)
    aspect_ratios: tuple[tuple[int, ...], ...] = ((2, 3), (2, 3), (2, 3), (2, 3), (2,), (2,))
    variances: tuple[float, float] = (0.1, 0.2)
    # True: clip (cx, cy, w, h) to [0, 1], the reference SSD's; "wh": clip w and h only, torchvision's
    # DefaultBoxGenerator (a stride-placed centre may lie past the border: 114 of SSD300's 8,732 differ).
    clip: bool | str = True

    @property
    def size_wh(self) -> tuple[int, int]:
        """(width, height) of the input the priors are for."""
        return _wh(self.image_size)

    def grid(self, k: int) -> tuple[int, int]:
        """(rows, columns) = (fh, fw) of source layer k."""
        f = self.feature_maps[k]
        return (f, f) if isinstance(f, int) else (int(f[0]), int(f[1]))

    def step_xy(self, k: int) -> tuple[float, float]:
        """Pixels between the centres of neighbouring cells of layer k, (along x, along y)."""
        s = self.steps[k]
        return (s, s) if isinstance(s, int | float) else (float(s[0]), float(s[1]))

    @property
    def boxes_per_location(self) -> tuple[int, ...]:
        return tuple(2 + 2 * len(ar) for ar in self.aspect_ratios)

    @property
    def num_priors(self) -> int:
        grids = (self.grid(k) for k in range(len(self.feature_maps)))
        return sum(fh * fw * n for (fh, fw), n in zip(grids, self.boxes_per_location, strict=True))

    def at_size(self, width: int, height: int, maps: Sequence[tuple[int, int]]) -> PriorSpec:
        """The same priors (pixel sizes, aspect ratios, variances) for a width x height input whose source layers
        are `maps` (fh, fw) (config.feature_maps gives them).

        Steps: a layer whose step is a real stride (8, 16, 32, 64 at 300: step x cells overshoots the image, as
        the padded convs do) keeps it, so its priors stay centred on its cells at every size. A layer whose step
        spreads its grid evenly over the image (100 and 300 at 300: step x cells == the side; the 3x3 and 1x1
        maps of the valid 3x3 convs, whose cells no stride places) gets side / cells on each axis, SSD's own
        rule ((i + 0.5) / |f_k|): it reproduces 100 and 300 at 300 and keeps that grid centred on the frame at
        any size. The price: those valid convs' cells really sit one stride (64 px) apart, so at 1920x1080 the
        spread spacing (68.6 x 72 px) puts the edge cells' priors up to about one cell off their receptive
        centres; they are the 213 px and larger priors, whose regression absorbs part of it. A rule exact at
        both 300 and large sizes would make 300 a special case (and today's models were trained on 100/300).
        A square input with integral steps keeps the reference (scalar) form, so 300x300 gives this very spec
        and old readers understand every square export they could run correctly; any other size is written in
        pairs, which old readers refuse instead of misreading.
        """
        if len(maps) != len(self.feature_maps):
            raise MfssdError(f"{len(maps)} feature maps for {len(self.feature_maps)} prior layers")
        w0, h0 = self.size_wh
        steps: list[tuple[float, float]] = []
        for k, (fh, fw) in enumerate(maps):
            fh0, fw0 = self.grid(k)
            sx0, sy0 = self.step_xy(k)
            sx = width / fw if _spreads(sx0, fw0, w0) else sx0
            sy = height / fh if _spreads(sy0, fh0, h0) else sy0
            steps.append((sx, sy))
        square = width == height and all(fh == fw for fh, fw in maps)
        if square and all(sx == sy and float(sx).is_integer() for sx, sy in steps):
            return replace(self, image_size=width, feature_maps=tuple(fh for fh, _ in maps),
                           steps=tuple(int(sx) for sx, _ in steps))  # fmt: skip
        return replace(self, image_size=(width, height), feature_maps=tuple((int(a), int(b)) for a, b in maps),
                       steps=tuple((float(sx), float(sy)) for sx, sy in steps))  # fmt: skip


def _clip_mode(value: Any) -> bool | str:
    if isinstance(value, str):
        if value != "wh":
            raise ValueError(f"prior clip {value!r} is not true, false or 'wh'")
        return value
    return bool(value)


def _spreads(step: float, cells: int, side: int) -> bool:
    """Whether a step spreads `cells` evenly over `side` pixels (rather than being the layer's stride)."""
    return abs(step * cells - side) <= 1e-6 * side


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
    # Upper bound of the scaled log-size offsets (loc_wh * variance) before exp, torchvision's box coder
    # (log(1000 / 16)); None: none, the reference SSD's. Written only when set, so that a reader that does
    # not know it refuses such a model instead of decoding its boxes differently.
    wh_clamp: float | None = None
    # Clip the decoded boxes to the image before NMS (torchvision's order; the reference SSD clips after,
    # which can keep two boxes that overlap inside the image but not beyond it). Written only when set.
    clip_before_nms: bool = False

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
            wh_clamp=self.wh_clamp,
            clip_before_nms=self.clip_before_nms,
        )
        if not (0 <= nms.conf_thresh < 1 and 0 < nms.iou_thresh <= 1 and 0 < nms.max_det <= nms.pre_nms_topk):
            raise MfssdError(
                f"invalid NMS settings conf={nms.conf_thresh}, iou={nms.iou_thresh}, max_det={nms.max_det}, "
                f"pre_nms_topk={nms.pre_nms_topk}: need 0 <= conf < 1, 0 < iou <= 1, 0 < max_det <= pre_nms_topk"
            )
        return nms


RESIZE_MODES = ("uint8", "float")


@dataclass(frozen=True)
class ModelConfig:
    """The whole description of a model. `num_classes` counts the background class."""

    variant: str
    num_classes: int
    class_names: tuple[str, ...]
    widths: dict[str, int]
    priors: PriorSpec
    # The network input: one side (square, every trained model: 300) or (width, height) for a fixed camera
    # resolution (at_input_size). Read it as input_wh wherever the two sides may differ.
    input_size: Size = 300
    # ImageNet statistics on [0,1] RGB: what torchvision's VGG16(-BN) weights were trained with.
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    color: str = "rgb"
    nms: NMSConfig = field(default_factory=NMSConfig)
    # The fusion's bilinear upsampling (FSSD, MFSSD): align_corners=True is what PyTorch 0.2-0.4 did, where
    # the FSSD authors' weights were trained. Written only when True; such a checkpoint has format /2,
    # which an older reader refuses rather than upsample the other way.
    upsample_align_corners: bool = False
    # How an image is resized to the input: "uint8" (OpenCV on the 8-bit image, then normalised: every
    # model trained here) or "float" (in float32, as torchvision's transform normalises then resizes;
    # on images of another size the 8-bit rounding moved its scores by up to 8e-3). Written only when
    # "float"; such a checkpoint has format /2.
    resize: str = "uint8"

    def __post_init__(self) -> None:
        # one form per size: a square (W, H) becomes its side, a list a tuple (from_dict, user code)
        object.__setattr__(self, "input_size", _size(self.input_size))

    @property
    def input_wh(self) -> tuple[int, int]:
        """(width, height) of the network input: what pre-processing resizes every image to."""
        return _wh(self.input_size)

    def at_input_size(self, width: int, height: int) -> ModelConfig:
        """This model for a width x height input: the same weights (the network is fully convolutional) with
        the priors of the feature maps it produces at that size (native-resolution inference: no tiles,
        one call per frame). Too small for the last layers: MfssdError naming the smallest size. Sizes are taken
        from the square (trained) config: PriorSpec.at_size tells strides from spread steps by that spec, which
        a resized spec no longer shows, so resizing a resized config is refused rather than shifting priors."""
        if (width, height) == self.input_wh:
            return self
        if not isinstance(self.input_size, int):
            raise MfssdError(
                f"this config is already sized for {_text(self.input_wh)}: make the {width}x{height} config from "
                "the square config it came from (the checkpoint's)"
            )
        maps = feature_maps(self.variant, width, height)
        cfg = replace(self, input_size=(width, height), priors=self.priors.at_size(width, height, maps))
        cfg.validate()
        return cfg

    def square_side(self, what: str) -> int:
        """The input's side, for code that handles square inputs only (`what` names it in the error)."""
        if not isinstance(self.input_size, int):
            raise MfssdError(
                f"{what} handles square inputs only; this model's input is {_text(self.input_wh)} "
                "(native resolution): use the square checkpoint it was exported from"
            )
        return self.input_size

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["widths"] = dict(self.widths)
        if d["nms"].get("wh_clamp") is None:
            d["nms"].pop("wh_clamp", None)  # absent unless set: older readers keep reading older models
        if not d["nms"].get("clip_before_nms"):
            d["nms"].pop("clip_before_nms", None)
        if not d.get("upsample_align_corners"):
            d.pop("upsample_align_corners", None)
        if d.get("resize") == "uint8":
            d.pop("resize", None)
        return _lists(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        try:
            pri = d["priors"]
            priors = PriorSpec(
                image_size=_int_or_pair(pri["image_size"]),
                feature_maps=tuple(_int_or_pair(x) for x in pri["feature_maps"]),
                steps=tuple(_step(x) for x in pri["steps"]),
                min_sizes=tuple(float(x) for x in pri["min_sizes"]),
                max_sizes=tuple(float(x) for x in pri["max_sizes"]),
                aspect_ratios=tuple(tuple(int(a) for a in ar) for ar in pri["aspect_ratios"]),
                variances=(float(pri["variances"][0]), float(pri["variances"][1])),
                clip=_clip_mode(pri["clip"]),
            )
            cfg = cls(
                variant=str(d["variant"]),
                num_classes=int(d["num_classes"]),
                class_names=tuple(str(c) for c in d["class_names"]),
                widths={str(k): int(v) for k, v in d["widths"].items()},
                priors=priors,
                input_size=_size(d.get("input_size", 300)),
                mean=_triple(d.get("mean", (0.485, 0.456, 0.406))),
                std=_triple(d.get("std", (0.229, 0.224, 0.225))),
                color=str(d.get("color", "rgb")),
                nms=NMSConfig(**d.get("nms", {})),
                upsample_align_corners=bool(d.get("upsample_align_corners", False)),
                resize=str(d.get("resize", "uint8")),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise MfssdError(f"model config is malformed ({type(exc).__name__}: {exc})") from exc
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.variant not in VARIANTS:
            raise MfssdError(f"unknown model variant {self.variant!r}: choose one of {', '.join(VARIANTS)}")
        if self.resize not in RESIZE_MODES:
            raise MfssdError(f"resize {self.resize!r}: choose one of {', '.join(RESIZE_MODES)}")
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
        if self.input_wh != self.priors.size_wh:
            raise MfssdError(
                f"input size {_text(self.input_wh)} differs from the priors' image size {_text(self.priors.size_wh)}"
            )
        maps = feature_maps(self.variant, *self.input_wh)
        have = tuple(self.priors.grid(k) for k in range(len(self.priors.feature_maps)))
        if have != maps:
            raise MfssdError(
                f"the priors' feature maps {list(have)} are not the {list(maps)} (rows, columns) that {self.variant} "
                f"produces at {_text(self.input_wh)}: rebuild the config with at_input_size"
            )

    def with_widths(self, widths: dict[str, int]) -> ModelConfig:
        cfg = replace(self, widths=dict(widths))
        cfg.validate()
        return cfg


def input_wh_of(value: Any) -> tuple[int, int]:
    """(width, height) of an input_size as metadata stores it (a side, or [W, H]); MfssdError if it is neither."""
    try:
        return _wh(_size(value))
    except (TypeError, ValueError):
        raise MfssdError(f"input_size {value!r} is neither a side in pixels nor [width, height]") from None


def _wh(size: Size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _text(wh: tuple[int, int]) -> str:
    return f"{wh[0]}x{wh[1]}"


def _size(v: Any) -> Size:
    """An int side or a (width, height) / (rows, columns) pair from a config or JSON; a square pair -> its side."""
    if isinstance(v, list | tuple):
        a, b = (_int(x) for x in v)
        return a if a == b else (a, b)
    return _int(v)


def _int_or_pair(v: Any) -> int | tuple[int, int]:
    """As written: the priors keep their form, so a config round-trips through JSON unchanged."""
    if isinstance(v, list | tuple):
        a, b = (_int(x) for x in v)
        return (a, b)
    return _int(v)


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int | float | str) or int(v) != float(v):
        raise ValueError(f"{v!r} is not a whole number")
    return int(v)


def _step(v: Any) -> float | tuple[float, float]:
    if isinstance(v, list | tuple):
        a, b = (float(x) for x in v)
        return (a, b)
    return int(v) if float(v).is_integer() else float(v)


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


# ------------------------------------------------------------------ input sizes (native-resolution inference)

MAX_SIDE = 8192  # a sanity bound: 8192x8192 already means 4.9 M priors per image


def _down(n: int) -> int:
    """A 3x3 stride-2 conv with padding 1 (the pyramid's and SSD extras' down-sampling): ceil(n / 2)."""
    return (n - 1) // 2 + 1


def _vgg_axis(n: int) -> tuple[int, int]:
    """conv4_3 and conv5_3 / fc7 along an input axis of n pixels: pool1, pool2 floor and pool3 ceil (VGG) ->
    conv4_3; pool4 floor -> conv5_3 and fc7 (pool5, fc6, fc7 keep the size)."""
    c4 = -(-((n // 2) // 2) // 2)
    return c4, c4 // 2


def _then(maps: tuple[int, ...], downs: int) -> tuple[tuple[int, ...], int]:
    """`maps`, then `downs` stride-2 3x3 convs and two unpadded 3x3 convs (SSD's extras and the FSSD/MFSSD
    pyramid alike): every source layer's size along the axis, and the smallest."""
    out = list(maps)
    for _ in range(downs):
        out.append(_down(out[-1]))
    out += [out[-1] - 2, out[-1] - 4]
    return tuple(out), min(out)


def ssd_axis(n: int) -> tuple[tuple[int, ...], int]:
    """SSD300's source layers along an axis of n pixels: conv4_3, fc7, then its extras (conv8_2 .. conv11_2)."""
    return _then(_vgg_axis(n), 2)


def mfssd_axis(n: int) -> tuple[tuple[int, ...], int]:
    """MFSSD's: the fusion at conv4_3's size, then the pyramid (pyr1 .. pyr5)."""
    return _then(_vgg_axis(n)[:1], 3)


def fssd_axis(n: int) -> tuple[tuple[int, ...], int]:
    """FSSD's: MFSSD's pyramid, and its unpadded conv6_2 after fc7 (not a source) must keep a cell too."""
    maps, low = mfssd_axis(n)
    return maps, min(low, _vgg_axis(n)[1] - 2)


# ------------------------------------------------------------------ model variants: one table

AxisMaps = Callable[[int], tuple[tuple[int, ...], int]]


@dataclass(frozen=True)
class Variant:
    """One model variant: the architecture it builds (`arch`, a ModelConfig.variant), its layers' base widths,
    its prior set, the sizes of its source layers along an input axis, and the class in mfssd_deploy.models
    ("MODULE:CLASS"). An entry whose name is not its arch is a named config of that architecture (other widths
    or priors), saved as the architecture itself. A new variant is its class's file and one entry here."""

    name: str
    arch: str
    widths: dict[str, int]
    priors: PriorSpec
    axis_maps: AxisMaps
    model: str


def _variants() -> dict[str, Variant]:
    vgg, pyr = VGG_WIDTHS, _PYRAMID
    ssd = {**vgg, "conv8_1": 256, "conv8_2": 512, "conv9_1": 128, "conv9_2": 256,
           "conv10_1": 128, "conv10_2": 256, "conv11_1": 128, "conv11_2": 256}  # fmt: skip
    fssd = {**vgg, "conv6_1": 256, "conv6_2": 512, "conv7_1": 128, "conv7_2": 256,
            "fuse_a": 256, "fuse_b": 256, "fuse_c": 256, **pyr}  # fmt: skip
    mfssd = {**vgg, "fuse_a": 512, "fuse_b": 256, "fuse_c": 256, **pyr}  # Conv5_3 fused, branch A 2:1:1
    return {
        v.name: v
        for v in (
            Variant("ssd300", "ssd300", ssd, SSD300_PRIORS, ssd_axis, "ssd:SSD300"),
            Variant("fssd", "fssd", fssd, FSSD_PRIORS, fssd_axis, "fssd:FSSD"),
            Variant("mfssd", "mfssd", mfssd, FSSD_PRIORS, mfssd_axis, "mfssd:MFSSD"),
            Variant("mfssd_bn", "mfssd_bn", dict(mfssd), FSSD_PRIORS, mfssd_axis, "mfssd:MFSSD"),
            # Named configs of the paper's comparison: SSD300 as the paper trained it for Table II (6 boxes per
            # location on conv4_3 too: 11,620 priors, the FSSD prior set, instead of the classic 8,732), and the
            # fusion-ratio ablation MFSSD-BN 1:1:1 (branch A with 256 channels instead of 512), which isolates
            # the paper's "more channels for conv4_3" choice.
            Variant("ssd300_11620", "ssd300", dict(ssd), FSSD_PRIORS, ssd_axis, "ssd:SSD300"),
            Variant("mfssd_bn_111", "mfssd_bn", {**mfssd, "fuse_a": 256}, FSSD_PRIORS, mfssd_axis, "mfssd:MFSSD"),
        )
    }


VARIANT_TABLE: dict[str, Variant] = _variants()
# The architectures: what a config's `variant` names (the other entries are named configs built from them).
VARIANTS: tuple[str, ...] = tuple(n for n, v in VARIANT_TABLE.items() if v.arch == n)
BASE_WIDTHS: dict[str, dict[str, int]] = {n: VARIANT_TABLE[n].widths for n in VARIANTS}


def _axis_maps(variant: str, n: int) -> tuple[tuple[int, ...], int]:
    """The source layers' sizes along one input axis of n pixels, by the architecture's arithmetic (models/),
    and the smallest layer on the way. tests/test_native_resolution.py checks it against the real modules."""
    return VARIANT_TABLE[variant].axis_maps(n)


def feature_maps(variant: str, width: int, height: int) -> tuple[tuple[int, int], ...]:
    """(rows, columns) of each source layer's output for a width x height input, in head order; a one-line
    MfssdError when the input is too small for the last layers (or absurdly large)."""
    if variant not in VARIANTS:
        raise MfssdError(f"unknown model variant {variant!r}: choose one of {', '.join(VARIANTS)}")
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise MfssdError(f"input size {width}x{height}: each side must be 1..{MAX_SIDE} pixels")
    (rows, low_r), (cols, low_c) = _axis_maps(variant, height), _axis_maps(variant, width)
    if min(low_r, low_c) < 1:
        raise MfssdError(
            f"input size {width}x{height} is too small for {variant}: its last layers would have no cells; "
            f"give each side at least {min_input_side(variant)} pixels"
        )
    return tuple(zip(rows, cols, strict=True))


@functools.cache
def min_input_side(variant: str) -> int:
    """The smallest side (pixels) at which every source layer of `variant` has at least one cell."""
    return next(n for n in range(1, MAX_SIDE + 1) if _axis_maps(variant, n)[1] >= 1)


def parse_input_size(text: str | int | Sequence[int], option: str = "--input-size") -> tuple[int, int]:
    """Text "WxH" (1920x1080) or "N" (square), an int or (W, H) -> (width, height); else a one-line MfssdError.
    The size's fit to the network is checked by feature_maps (ModelConfig.at_input_size)."""
    try:
        if isinstance(text, str):
            parts = text.lower().replace(" ", "").split("x")
            if len(parts) == 1:
                parts *= 2
            w, h = (int(p) for p in parts)  # ValueError for 3 parts, "", "1920.5"
        elif isinstance(text, int):
            w = h = _int(text)  # _int refuses True / False
        else:
            w, h = (_int(v) for v in text)
    except (TypeError, ValueError):
        raise MfssdError(
            f"{option} {text!r}: give WIDTHxHEIGHT in pixels (e.g. 1920x1080) or one number for a square input"
        ) from None
    if w < 1 or h < 1:
        raise MfssdError(f"{option} {text!r}: width and height must be positive pixel counts")
    return w, h


def scale_width(channels: int, width: float, divisor: int = 8) -> int:
    """Channels for a width multiplier: a multiple of `divisor`, at least `divisor`."""
    if width == 1.0:
        return channels
    return max(divisor, math.floor(channels * width / divisor + 0.5) * divisor)


def make_config(
    variant: str = "mfssd_bn",
    num_classes: int = 21,
    class_names: tuple[str, ...] | list[str] | None = None,
    width: float = 1.0,
    widths: dict[str, int] | None = None,
) -> ModelConfig:
    """Config for a VARIANT_TABLE entry: base widths scaled by `width`, or an explicit per-layer `widths` dict."""
    entry = VARIANT_TABLE.get(variant)
    if entry is None:
        raise MfssdError(f"unknown model variant {variant!r}: choose one of {', '.join(VARIANT_TABLE)}")
    if width <= 0:
        raise MfssdError(f"width multiplier must be > 0, got {width}")
    if class_names is None:
        if num_classes == len(VOC_CLASSES) + 1:
            class_names = VOC_CLASSES
        else:
            class_names = tuple(f"class{i}" for i in range(1, num_classes))
    if widths is None:
        widths = {k: scale_width(v, width) for k, v in entry.widths.items()}
    cfg = ModelConfig(
        variant=entry.arch,
        num_classes=num_classes,
        class_names=tuple(class_names),
        widths=dict(widths),
        priors=entry.priors,
    )
    cfg.validate()
    return cfg
