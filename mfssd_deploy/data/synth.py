"""A synthetic small-object detection dataset (JPEG + COCO JSON), deterministic for a seed.

Nothing can be downloaded where this project is built, so the demo model learns from shapes drawn
on cluttered backgrounds. The size mix follows COCO's definitions in the original image
(small < 32^2 px of box area, medium < 96^2, large above) so APs/APm/APl all mean something.
Each image is generated from its own RNG stream (seed, split, index): any image can be rebuilt
alone, and generation order does not matter.

LARGE_FRAMES (generate_large) is the large-frame variant for tiled inference: 1920x1080 and 1280x720
frames like surveillance or drone footage, 40-80 objects each, mostly small, at the sizes the demo model
was trained on (so it is the detector without retraining), on backgrounds with proportionally more clutter.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mfssd_deploy.fileio import atomic_path

CLASSES: tuple[str, ...] = ("circle", "ring", "triangle", "square", "star", "cross")
# (width, height): several sizes and aspect ratios, none far above the 300 px network input, so a
# small object stays small but visible after resizing.
IMAGE_SIZES: tuple[tuple[int, int], ...] = (
    (300, 300), (320, 240), (400, 300), (300, 400), (384, 384), (352, 288), (288, 352),
)  # fmt: skip
SIZE_MIX = {"small": 0.4, "medium": 0.35, "large": 0.25}  # fraction of objects per COCO size class
SS = 4  # supersampling factor of the shape masks (anti-aliased edges)


@dataclass(frozen=True)
class SynthSpec:
    objects_per_image: tuple[int, int] = (3, 10)
    small_side: tuple[float, float] = (18.0, 31.0)  # sqrt(box area) in original-image pixels
    medium_side: tuple[float, float] = (32.0, 95.0)
    large_side: tuple[float, float] = (96.0, 200.0)
    max_overlap: float = 0.35  # max fraction of a new box covered by earlier boxes (partial occlusion)
    jpeg_quality: tuple[int, int] = (55, 95)
    # Added for the large-frame set; the defaults keep every default image byte for byte as before.
    image_sizes: tuple[tuple[int, int], ...] = IMAGE_SIZES  # (width, height), drawn uniformly
    size_mix: tuple[tuple[str, float], ...] = tuple(SIZE_MIX.items())  # fraction of objects per size class
    clutter: float = 1.0  # distractor strokes per image, x the default 3-14


LARGE_FRAME_SIZES: tuple[tuple[int, int], ...] = ((1920, 1080), (1280, 720))
LARGE_FRAMES = SynthSpec(
    objects_per_image=(40, 80),
    image_sizes=LARGE_FRAME_SIZES,
    size_mix=(("small", 0.7), ("medium", 0.25), ("large", 0.05)),
    clutter=10.0,
)


def _unit_polygon(kind: str, rng: np.random.Generator) -> list[np.ndarray]:
    """Contours in [-1, 1]^2; a second contour is a hole (ring)."""
    if kind in ("circle", "ring"):
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        outer = np.stack([np.cos(t), np.sin(t)], 1)
        return [outer, outer * rng.uniform(0.45, 0.65)] if kind == "ring" else [outer]
    if kind == "triangle":
        t = np.deg2rad([90, 210, 330])
        return [np.stack([np.cos(t), -np.sin(t)], 1)]
    if kind == "square":
        return [np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)]
    if kind == "star":
        t = np.deg2rad(90 + 36 * np.arange(10))
        r = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.38, 0.5))
        return [np.stack([r * np.cos(t), -r * np.sin(t)], 1)]
    if kind == "cross":
        a = rng.uniform(0.28, 0.4)
        pts = [
            (-a, -1),
            (a, -1),
            (a, -a),
            (1, -a),
            (1, a),
            (a, a),
            (a, 1),
            (-a, 1),
            (-a, a),
            (-1, a),
            (-1, -a),
            (-a, -a),
        ]
        return [np.array(pts, dtype=np.float64)]
    raise ValueError(kind)


def _background(rng: np.random.Generator, w: int, h: int, clutter: float = 1.0) -> np.ndarray:
    """Gradient + low-frequency texture + stripes or checks + distractor strokes, uint8 BGR."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    ang = rng.uniform(0, 2 * np.pi)
    g = (np.cos(ang) * xx + np.sin(ang) * yy) / max(w, h)
    g = (g - g.min()) / max(float(g.max() - g.min()), 1e-6)
    img = c0[None, None] * (1 - g[..., None]) + c1[None, None] * g[..., None]
    noise = rng.normal(0, 1, (max(2, h // 24), max(2, w // 24), 3)).astype(np.float32)
    img += cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC) * rng.uniform(10, 40)
    pattern = rng.integers(0, 3)
    if pattern == 1:
        f = rng.uniform(0.02, 0.15)
        a = rng.uniform(0, np.pi)
        img += (np.sin((np.cos(a) * xx + np.sin(a) * yy) * f * 2 * np.pi) * rng.uniform(8, 30))[..., None]
    elif pattern == 2:
        cell = int(rng.integers(8, 40))
        chk = ((xx // cell + yy // cell) % 2).astype(np.float32) * 2 - 1
        img += (chk * rng.uniform(8, 25))[..., None]
    img = np.clip(img, 0, 255).astype(np.uint8)
    strokes = (3, 15) if clutter == 1.0 else (max(1, round(3 * clutter)), max(2, round(15 * clutter)))
    for _ in range(int(rng.integers(*strokes))):  # distractor strokes: thin lines and arcs
        colour = tuple(int(v) for v in rng.uniform(0, 255, 3))
        thick = int(rng.integers(1, 3))
        if rng.random() < 0.6:
            p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.line(img, p1, p2, colour, thick, cv2.LINE_AA)
        else:
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = (int(rng.integers(5, 60)), int(rng.integers(5, 60)))
            start = float(rng.uniform(0, 360))
            cv2.ellipse(img, centre, axes, 0.0, start, start + float(rng.uniform(30, 200)), colour, thick, cv2.LINE_AA)
    return img


def _contrasting_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A random colour at least 90 (L2, BGR) away from the mean background colour under the object."""
    mean = under.reshape(-1, 3).mean(0)
    for _ in range(20):
        c = rng.uniform(0, 255, 3)
        if np.linalg.norm(c - mean) >= 90:
            return c
    return 255.0 - mean


def _draw(
    rng: np.random.Generator, img: np.ndarray, kind: str, box: tuple[float, float, float, float], angle: float
) -> tuple[float, float, float, float] | None:
    """Draw a rotated shape of `box`'s size; its tight box (xyxy), or None if clipped away."""
    h_img, w_img = img.shape[:2]
    cx, cy, bw, bh = box
    contours = _unit_polygon(kind, rng)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    pts = [(c * [bw / 2, bh / 2]) @ rot.T for c in contours]
    lo, hi = pts[0].min(0), pts[0].max(0)
    x1, y1, x2, y2 = cx + lo[0], cy + lo[1], cx + hi[0], cy + hi[1]
    ix1, iy1 = max(0, math.floor(x1)), max(0, math.floor(y1))
    ix2, iy2 = min(w_img, math.ceil(x2)), min(h_img, math.ceil(y2))
    if ix2 - ix1 < 2 or iy2 - iy1 < 2:
        return None
    mask = np.zeros(((iy2 - iy1) * SS, (ix2 - ix1) * SS), np.uint8)
    for k, c in enumerate(pts):
        poly = np.round((c + np.array([cx - ix1, cy - iy1])) * SS * 16).astype(np.int32)  # 4 fractional bits
        cv2.fillPoly(mask, [poly], 255 if k == 0 else 0, cv2.LINE_AA, shift=4)
    alpha = cv2.resize(mask, (ix2 - ix1, iy2 - iy1), interpolation=cv2.INTER_AREA).astype(np.float32)[..., None] / 255
    patch = img[iy1:iy2, ix1:ix2].astype(np.float32)
    colour = _contrasting_colour(rng, patch)
    # Shading: a gentle gradient across the object so it is not a flat colour.
    shade = np.linspace(-1, 1, ix2 - ix1, dtype=np.float32)[None, :, None] * rng.uniform(0, 25)
    fill = np.clip(colour[None, None] + shade, 0, 255)
    img[iy1:iy2, ix1:ix2] = np.clip(patch * (1 - alpha) + fill * alpha, 0, 255).astype(np.uint8)
    # Clip the annotated box to the image (objects may be cut by the border, as in real photos).
    x1, y1, x2, y2 = max(0.0, x1), max(0.0, y1), min(float(w_img), x2), min(float(h_img), y2)
    return (x1, y1, x2, y2)


def _overlap_fraction(box: tuple[float, float, float, float], others: list[list[float]]) -> float:
    x1, y1, x2, y2 = box
    area = (x2 - x1) * (y2 - y1)
    worst = 0.0
    for o in others:
        iw = min(x2, o[0] + o[2]) - max(x1, o[0])
        ih = min(y2, o[1] + o[3]) - max(y1, o[1])
        if iw > 0 and ih > 0:
            worst = max(worst, iw * ih / area, iw * ih / (o[2] * o[3]))
    return worst


def make_image(seed: int, split: str, index: int, spec: SynthSpec = SynthSpec()) -> tuple[np.ndarray, list[dict]]:
    """One image (BGR uint8) and its annotations [{bbox: [x, y, w, h], category_id, size}]."""
    rng = np.random.default_rng([seed, {"train": 1, "val": 2, "test": 3}.get(split, 9), index])
    w, h = spec.image_sizes[int(rng.integers(len(spec.image_sizes)))]
    img = _background(rng, w, h, spec.clutter)
    anns: list[dict[str, Any]] = []
    n = int(rng.integers(spec.objects_per_image[0], spec.objects_per_image[1] + 1))
    sizes = [k for k, _ in spec.size_mix]
    mix = [float(v) for _, v in spec.size_mix]
    for _ in range(n):
        for _attempt in range(10):
            size_class = sizes[int(rng.choice(len(sizes), p=mix))]
            lo, hi = getattr(spec, f"{size_class}_side")
            side = min(float(rng.uniform(lo, hi)), 0.8 * min(w, h))
            aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
            kind = CLASSES[int(rng.integers(len(CLASSES)))]
            angle = 0.0 if kind in ("circle", "ring") and abs(aspect - 1) < 0.05 else float(rng.uniform(0, 2 * np.pi))
            # Size the unrotated shape so that its rotated tight box has roughly the sampled area.
            bw, bh = side * math.sqrt(aspect), side / math.sqrt(aspect)
            cx, cy = float(rng.uniform(0, w)), float(rng.uniform(0, h))
            margin = 0.15  # at most ~15% of an object outside the image
            if not (-margin * bw <= cx - bw / 2 and cx + bw / 2 <= w + margin * bw):
                continue
            if not (-margin * bh <= cy - bh / 2 and cy + bh / 2 <= h + margin * bh):
                continue
            est = (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2)
            if _overlap_fraction(est, [a["bbox"] for a in anns]) > spec.max_overlap:
                continue
            drawn = _draw(rng, img, kind, (cx, cy, bw, bh), angle)
            if drawn is None:
                continue
            x1, y1, x2, y2 = drawn
            if (x2 - x1) < 4 or (y2 - y1) < 4:
                continue
            area = (x2 - x1) * (y2 - y1)
            anns.append(
                {
                    "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                    "category_id": CLASSES.index(kind) + 1,
                    "area": round(area, 2),
                    "size": "small" if area < 32**2 else "medium" if area < 96**2 else "large",
                }
            )
            break
    if rng.random() < 0.3:  # strokes in front of the objects: thin partial occluders
        for _ in range(int(rng.integers(1, 4))):
            p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.line(img, p1, p2, tuple(int(v) for v in rng.uniform(0, 255, 3)), 1, cv2.LINE_AA)
    # Sensor-like degradations: blur, noise (JPEG artefacts come from the quality on write).
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (3, 3), float(rng.uniform(0.3, 1.0)))
    if rng.random() < 0.5:
        img = np.clip(img.astype(np.float32) + rng.normal(0, rng.uniform(2, 8), img.shape), 0, 255).astype(np.uint8)
    return img, anns


def _write_split(
    out: Path, split: str, count: int, seed: int, spec: SynthSpec, progress: Callable[[int], None] | None
) -> dict[str, int]:
    img_dir = out / split
    img_dir.mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    hist = {"small": 0, "medium": 0, "large": 0}
    for i in range(count):
        img, anns = make_image(seed, split, i, spec)
        name = f"{i:06d}.jpg"
        quality = int(np.random.default_rng([seed, 7, i]).integers(*spec.jpeg_quality))
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for {name}")
        with atomic_path(img_dir / name) as tmp:
            tmp.write_bytes(buf.tobytes())
        images.append({"id": i + 1, "file_name": name, "width": img.shape[1], "height": img.shape[0]})
        for a in anns:
            hist[a["size"]] += 1
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": a["category_id"],
                    "bbox": a["bbox"],
                    "area": a["area"],
                    "iscrowd": 0,
                }
            )
        if progress:
            progress(1)
    coco = {
        "info": {"description": f"mfssd synthetic small objects, split {split}, seed {seed}"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": c, "supercategory": "shape"} for k, c in enumerate(CLASSES)],
    }
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "annotations" / f"{split}.json") as tmp:
        tmp.write_text(json.dumps(coco))
    return hist


def generate(
    out: str | os.PathLike[str],
    train: int,
    val: int,
    seed: int = 0,
    spec: SynthSpec = SynthSpec(),
    show_progress: bool = True,
) -> dict[str, dict[str, int]]:
    """Write DIR/{train,val}/*.jpg and DIR/annotations/{train,val}.json; returns size histograms."""
    from tqdm import tqdm

    out = Path(out)
    hists = {}
    with tqdm(total=train + val, desc=f"synth -> {out}", unit="img", disable=None if show_progress else True) as bar:
        for split, n in (("train", train), ("val", val)):
            if n > 0:
                hists[split] = _write_split(out, split, n, seed, spec, bar.update)
    return hists


def generate_large(
    out: str | os.PathLike[str], images: int = 24, seed: int = 1, show_progress: bool = True
) -> dict[str, dict[str, int]]:
    """The large-frame small-object set (LARGE_FRAMES) as a COCO validation split: DIR/val/*.jpg and
    DIR/annotations/val.json, deterministic for a seed; returns the size histogram."""
    return generate(out, 0, images, seed, LARGE_FRAMES, show_progress)


def format_histogram(hists: dict[str, dict[str, int]]) -> str:
    lines = ["split  small (<32^2)   medium        large        objects"]
    for split, h in hists.items():
        total = max(1, sum(h.values()))
        cells = "  ".join(f"{h[k]:6d} ({100 * h[k] / total:4.1f}%)" for k in ("small", "medium", "large"))
        lines.append(f"{split:6s} {cells}  {sum(h.values()):7d}")
    return "\n".join(lines)
