"""Tiled (sliced) inference geometry: the tile grid, the crops of a call, boxes mapped back, merging.

Pure functions in numpy (the lean runtime tiles end2end models without torch); `merge_torch` is the same
merge on torch tensors, for raw layouts whose detections stay on the backend's device. The conventions
are SAHI's (sahi 0.12.8), so the two compare one for one (tests/test_tiling.py):

* grid: `sahi.slicing.get_slice_bboxes` -- tiles start every `tile - int(overlap * tile)` pixels, rows
  outer, and a tile that would cross the right or bottom border is shifted back to end on it; an image
  smaller than the tile is one tile covering it (resized by the model like any crop);
* full-frame pass (SAHI's "standard prediction"): the whole image resized once more, beside its tiles,
  for objects larger than a tile (skipped when the image is one tile, as SAHI does);
* merge, per image and class: "nms" or "greedy_nmm" (SAHI's GREEDYNMM); boxes match when their IoS
  (intersection over the smaller area) or IoU is >= threshold. Greedy NMM keeps the NMS survivors and
  grows each into the union of the boxes it suppressed, score kept from the best; as in SAHI, each
  suppressed box is re-checked against the grown box and, failing, is dropped (suppressed, not merged).

Defaults, each chosen by measurement on the large-frame set (benchmarks/tiling/results.md): NMS at
IoS >= 0.5 (greedy NMM grows good boxes into low-score neighbours: AP 0.24 against 0.67 at the 0.01
evaluation threshold, 2 points lower at 0.3), boxes touching an inner tile edge dropped (+0.9 AP, +5
APl), the full-frame pass on (+14 APl for one crop in 41), overlap 0.2 (0.4: +1.7 AP for 1.5x the crops).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from mfssd_deploy.errors import MfssdError

if TYPE_CHECKING:
    import torch

MERGES = ("nms", "greedy_nmm")
METRICS = ("ios", "iou")
EDGES = ("drop", "merge")
DEFAULT_OVERLAP = 0.2  # SAHI's default
# edge="drop": a tile's box whose side lies within this many pixels of an inner tile edge is dropped
EDGE_MARGIN = 2.0
# crops: one row per model input -- image index, x0, y0, x1, y1 (the crop), image width, image height
CROP_COLUMNS = ("image", "x0", "y0", "x1", "y1", "width", "height")


@dataclass(frozen=True)
class Tiling:
    """How to tile: `tile` = (width, height) in pixels of the original image; `overlap` in [0, 1) of a tile;
    `full_frame`: also run the whole image resized; `merge`/`metric`/`threshold`: how the boxes of the
    tiles are merged (see the module docstring); `edge`: boxes cut by a tile's inner edge are "drop"ped
    (a neighbouring tile holds an object whole when it is no wider than the overlap; the full frame sees
    larger ones), or "merge"d like any other (SAHI's way)."""

    tile: tuple[int, int]
    overlap: float = DEFAULT_OVERLAP
    full_frame: bool = True
    merge: str = "nms"
    metric: str = "ios"
    threshold: float = 0.5
    edge: str = "drop"

    def __post_init__(self) -> None:
        w, h = self.tile
        if not (_whole(w) and _whole(h)) or w < 1 or h < 1:
            shown = w if w == h else f"({w}, {h})"
            raise MfssdError(f"tile {shown}: a tile is a whole number of pixels >= 1 (e.g. 300, or (320, 240))")
        if not (isinstance(self.overlap, numbers.Real) and 0 <= self.overlap < 1):
            raise MfssdError(f"overlap {self.overlap}: the overlap is a fraction of a tile in [0, 1), e.g. 0.2")
        if self.merge not in MERGES:
            raise MfssdError(f"merge {self.merge!r}: choose one of {', '.join(MERGES)}")
        if self.metric not in METRICS:
            raise MfssdError(f"merge metric {self.metric!r}: choose one of {', '.join(METRICS)}")
        if not (isinstance(self.threshold, numbers.Real) and 0 < self.threshold <= 1):
            raise MfssdError(f"merge threshold {self.threshold}: need 0 < threshold <= 1, e.g. 0.5")
        if self.edge not in EDGES:
            raise MfssdError(f"edge {self.edge!r}: choose one of {', '.join(EDGES)}")
        object.__setattr__(self, "tile", (int(w), int(h)))
        object.__setattr__(self, "overlap", float(self.overlap))
        object.__setattr__(self, "threshold", float(self.threshold))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tile"] = list(self.tile)
        return d


def _whole(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def resolve_tiling(tile: Any, overlap: float | None, default_tile: int | tuple[int, int],
                   base: Tiling | None = None) -> Tiling | None:  # fmt: skip
    """What a user passed -> the Tiling in effect (None: no tiling).

    tile: None -> `base` (the Detector's own setting); False -> no tiling; True -> `base`, or tiles of
    `default_tile` (the model's input size: a side or (W, H)); N or (W, H) -> tiles of that size (other settings from
    `base`); a Tiling -> itself. `overlap` replaces the overlap of whatever results; it needs tiling.
    """
    if isinstance(tile, Tiling):
        out: Tiling | None = tile
    elif tile is None:
        out = base
    elif tile is False:
        if overlap is not None:
            raise MfssdError(f"overlap={overlap} with tile=False: tiling is off, so there is no overlap to set")
        return None
    elif tile is True:
        out = base if base is not None else Tiling(_tile_size(default_tile))
    else:
        size = _tile_size(tile)
        out = replace(base, tile=size) if base is not None else Tiling(size)
    if overlap is not None:
        if out is None:
            raise MfssdError(f"overlap={overlap} but tiling is off: pass tile=N (or tile=True: the model's input size)")
        out = replace(out, overlap=overlap)
    return out


def _tile_size(tile: Any) -> tuple[int, int]:
    if _whole(tile):
        return int(tile), int(tile)
    if isinstance(tile, tuple | list) and len(tile) == 2:
        return tile[0], tile[1]  # validated by Tiling
    raise MfssdError(f"tile={tile!r}: pass a tile size in pixels (300, or (width, height)), True, False or a Tiling")


def _spans(length: int, tile: int, overlap: float) -> list[tuple[int, int]]:
    """[start, end) of the tiles along one axis, SAHI's rule (get_slice_bboxes)."""
    step_back = int(overlap * tile)  # SAHI truncates the overlap in pixels the same way
    spans: list[tuple[int, int]] = []
    lo = 0
    while True:
        hi = lo + tile
        if hi >= length:
            spans.append((max(0, length - tile), length))
            return spans
        spans.append((lo, hi))
        lo = hi - step_back


def tile_grid(width: int, height: int, tile: tuple[int, int], overlap: float) -> np.ndarray:
    """Tiles of a width x height image: int64 [T, 4] xyxy pixels (x1, y1 exclusive), rows outer, in the
    order and at the positions of `sahi.slicing.get_slice_bboxes`."""
    if width < 1 or height < 1:
        raise MfssdError(f"cannot tile an empty image ({width}x{height})")
    xs = _spans(int(width), tile[0], overlap)
    ys = _spans(int(height), tile[1], overlap)
    return np.array([(x0, y0, x1, y1) for y0, y1 in ys for x0, x1 in xs], dtype=np.int64).reshape(-1, 4)


def plan_crops(shapes: Sequence[tuple[int, int]], tiling: Tiling) -> np.ndarray:
    """The model inputs of a call: int64 [C, 7] rows (CROP_COLUMNS) for images of (height, width) `shapes`,
    image by image: its tiles in grid order, then its full frame (when `tiling.full_frame` and the image
    has more than one tile)."""
    rows: list[np.ndarray] = []
    for i, (h, w) in enumerate(shapes):
        grid = tile_grid(w, h, tiling.tile, tiling.overlap)
        if tiling.full_frame and len(grid) > 1:
            grid = np.concatenate([grid, np.array([[0, 0, w, h]], dtype=np.int64)])
        meta = np.broadcast_to(np.array([[i]], dtype=np.int64), (len(grid), 1))
        size = np.broadcast_to(np.array([[w, h]], dtype=np.int64), (len(grid), 2))
        rows.append(np.concatenate([meta, grid, size], axis=1))
    return np.concatenate(rows) if rows else np.zeros((0, len(CROP_COLUMNS)), np.int64)


def crop_views(images: Sequence[np.ndarray], crops: np.ndarray) -> list[np.ndarray]:
    """The pixels of each crop: views into the images (no copy)."""
    return [images[int(i)][int(y0) : int(y1), int(x0) : int(x1)] for i, x0, y0, x1, y1, _, _ in crops.tolist()]


def map_to_image(boxes: Any, crops: Any, edge_margin: float | None = None) -> tuple[Any, Any]:
    """Model boxes of a batch of crops -> pixels of their images, and which touch an inner tile edge.

    boxes [B, K, 4] xyxy in [0, 1] of each crop (the model's normalised output); crops [B, 7] as from
    plan_crops, as floats of the same array type (numpy, or torch on the boxes' device). Returns pixel
    boxes [B, K, 4] (clipped to the crop, then shifted by its origin) and a bool [B, K] mask: the box lies
    within `edge_margin` pixels of an edge of its crop that is not the image's border (all False when
    `edge_margin` is None). Works on numpy arrays and torch tensors alike.
    """
    origin = crops[:, [1, 2, 1, 2]]
    size = crops[:, [3, 4, 3, 4]] - origin
    px = _minimum((boxes * size[:, None, :]).clip(0), size[:, None, :]) + origin[:, None, :]
    x0, y0, x1, y1, w, h = (crops[:, k : k + 1] for k in range(1, 7))
    m = -float("inf") if edge_margin is None else float(edge_margin)  # -inf: no box touches
    touch = (
        ((x0 > 0) & (px[..., 0] <= x0 + m))
        | ((y0 > 0) & (px[..., 1] <= y0 + m))
        | ((x1 < w) & (px[..., 2] >= x1 - m))
        | ((y1 < h) & (px[..., 3] >= y1 - m))
    )
    return px, touch


def _minimum(a: Any, b: Any) -> Any:
    if isinstance(a, np.ndarray):
        return np.minimum(a, b)
    import torch

    return torch.minimum(a, b)


# --------------------------------------------------------------------------------------------- merge (numpy)


def merge(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    method: str = "greedy_nmm",
    metric: str = "ios",
    threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge detections of one image across tiles, per class: (boxes [n,4] float32 xyxy px, scores [n],
    labels [n]) -> the merged (boxes, scores, labels), sorted by score (SAHI's tie order: then x1, y1, x2,
    y2). The match test is SAHI's: metric computed in float32 from the float32 boxes, >= threshold; the
    re-check of a grown box in float64."""
    b = np.ascontiguousarray(boxes, dtype=np.float32).reshape(-1, 4)
    s = np.ascontiguousarray(scores, dtype=np.float32).reshape(-1)
    lab = np.ascontiguousarray(labels).reshape(-1).astype(np.int64)
    if len(s) == 0:
        return b, s, lab
    order = np.lexsort((b[:, 3], b[:, 2], b[:, 1], b[:, 0], -s))
    b, s, lab = b[order], s[order], lab[order]
    p, q = _match_pairs(b, lab, metric, threshold)  # p before q in score order
    keepers, owner = _greedy(len(s), p, q)
    if method == "nms":
        return b[keepers], s[keepers], lab[keepers]
    return _grow(b, keepers, owner, metric, threshold), s[keepers], lab[keepers]


def _match_pairs(b: np.ndarray, lab: np.ndarray, metric: str, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (p < q, same label) whose metric is >= threshold, sorted by (p, q). Sweep and prune:
    only boxes whose x ranges overlap are compared (a positive threshold needs a positive intersection),
    so the cost follows the overlaps, not n^2."""
    n = len(b)
    # separate the classes along x: no box of one class overlaps a box of another
    shift = lab.astype(np.float64) * (float(b[:, 0::2].max() - b[:, 0::2].min()) + 1.0)
    x1 = b[:, 0].astype(np.float64) + shift
    x2 = b[:, 2].astype(np.float64) + shift
    xs = np.argsort(x1, kind="stable")
    hi = np.searchsorted(x1[xs], x2[xs], side="left")  # boxes xs[k+1 : hi[k]] start inside box xs[k]
    first = np.arange(1, n + 1)
    counts = np.maximum(hi - first, 0)
    a = np.repeat(np.arange(n), counts)
    c = first[a] + np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    i, j = xs[a], xs[c]
    ratio = _ratio32(b[i], b[j], metric)
    hit = ratio >= np.float32(threshold)
    i, j = i[hit], j[hit]
    p, q = np.minimum(i, j), np.maximum(i, j)
    o = np.lexsort((q, p))
    return p[o], q[o]


def _area(b: np.ndarray) -> np.ndarray:
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def _ratio32(u: np.ndarray, v: np.ndarray, metric: str) -> np.ndarray:
    """IoS / IoU of paired float32 boxes, in float32 as SAHI computes its match matrix; 0 where undefined."""
    inter = np.maximum(np.float32(0), np.minimum(u[:, 2], v[:, 2]) - np.maximum(u[:, 0], v[:, 0])) * np.maximum(
        np.float32(0), np.minimum(u[:, 3], v[:, 3]) - np.maximum(u[:, 1], v[:, 1])
    )
    au, av = _area(u), _area(v)
    denom = au + av - inter if metric == "iou" else np.minimum(au, av)
    return np.divide(inter, denom, out=np.zeros_like(inter), where=denom > 0)


def _greedy(n: int, p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy suppression over the match graph: positions in score order -> (keepers, owner), where
    owner[q] is the keeper that suppressed q (-1 for keepers)."""
    starts = np.searchsorted(p, np.arange(n + 1))
    owner = [-1] * n
    suppressed = [False] * n
    qs = q.tolist()
    bounds = starts.tolist()
    keepers: list[int] = []
    for k in range(n):
        if suppressed[k]:
            continue
        keepers.append(k)
        for m in qs[bounds[k] : bounds[k + 1]]:
            if not suppressed[m]:
                suppressed[m] = True
                owner[m] = k
    return np.asarray(keepers, dtype=np.int64), np.asarray(owner, dtype=np.int64)


def _grow(b: np.ndarray, keepers: np.ndarray, owner: np.ndarray, metric: str, threshold: float) -> np.ndarray:
    """Each keeper grown into the union of the boxes it suppressed, taken in score order, each re-checked
    (float64) against the box grown so far; vectorised over keepers, one step per rank in a group."""
    grown = b[keepers].astype(np.float64)
    members = np.flatnonzero(owner >= 0)  # in score order
    if len(members):
        slot = np.searchsorted(keepers, owner[members])  # keeper index of each member
        o = np.argsort(slot, kind="stable")
        members, slot = members[o], slot[o]
        rank = np.arange(len(slot)) - np.searchsorted(slot, slot, side="left")
        b64 = b.astype(np.float64)
        for r in range(int(rank.max()) + 1):
            sel = rank == r
            k, m = slot[sel], members[sel]
            ok = _ratio64(grown[k], b64[m], metric) >= threshold
            k, m = k[ok], m[ok]
            grown[k, :2] = np.minimum(grown[k, :2], b64[m, :2])
            grown[k, 2:] = np.maximum(grown[k, 2:], b64[m, 2:])
    return grown.astype(np.float32)


def _ratio64(u: np.ndarray, v: np.ndarray, metric: str) -> np.ndarray:
    inter = np.clip(np.minimum(u[:, 2], v[:, 2]) - np.maximum(u[:, 0], v[:, 0]), 0, None) * np.clip(
        np.minimum(u[:, 3], v[:, 3]) - np.maximum(u[:, 1], v[:, 1]), 0, None
    )
    au, av = _area(u), _area(v)
    denom = au + av - inter if metric == "iou" else np.minimum(au, av)
    return np.divide(inter, denom, out=np.zeros_like(inter), where=denom > 0)


# --------------------------------------------------------------------------------------------- merge (torch)


def merge_torch(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    method: str = "greedy_nmm",
    metric: str = "ios",
    threshold: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`merge` on torch tensors, on their device (the raw layout's detections stay on the GPU): the same
    result, without a Python loop over boxes. `labels` may fold in the image (image * classes + class) to
    merge a batch of images at once. The greedy suppression is solved as a fixed point (Cluster-NMS:
    keep = not suppressed by any kept earlier match), which equals the sequential greedy result."""
    import torch

    dev = boxes.device
    b = boxes.to(torch.float32).reshape(-1, 4)
    s = scores.to(torch.float32).reshape(-1)
    lab = labels.reshape(-1).to(torch.int64)
    n = int(s.numel())
    if n == 0:
        return b, s, lab
    order = _lexsort_torch([-s, b[:, 0], b[:, 1], b[:, 2], b[:, 3]])
    b, s, lab = b[order], s[order], lab[order]
    p, q = _match_pairs_torch(b, lab, metric, threshold)
    keep = torch.ones(n, dtype=torch.bool, device=dev)
    while True:
        hit = torch.zeros(n, dtype=torch.bool, device=dev)
        hit[q[keep[p]]] = True
        new = ~hit
        if torch.equal(new, keep):
            break
        keep = new
    keepers = torch.nonzero(keep).flatten()
    if method == "nms":
        return b[keepers], s[keepers], lab[keepers]
    live = keep[p]
    owner = torch.full((n,), n, dtype=torch.int64, device=dev)
    owner.scatter_reduce_(0, q[live], p[live], reduce="amin")  # the first kept match suppressed it
    members = torch.nonzero(~keep).flatten()
    grown = b[keepers].to(torch.float64)
    if members.numel():
        slot = torch.searchsorted(keepers, owner[members])
        o = torch.sort(slot, stable=True).indices
        members, slot = members[o], slot[o]
        rank = torch.arange(slot.numel(), device=dev) - torch.searchsorted(slot, slot, right=False)
        b64 = b.to(torch.float64)
        for r in range(int(rank.max()) + 1):
            sel = rank == r
            k, m = slot[sel], members[sel]
            ok = _ratio_torch(grown[k], b64[m], metric) >= threshold
            k, m = k[ok], m[ok]
            grown[k, :2] = torch.minimum(grown[k, :2], b64[m, :2])
            grown[k, 2:] = torch.maximum(grown[k, 2:], b64[m, 2:])
    return grown.to(torch.float32), s[keepers], lab[keepers]


def _lexsort_torch(keys: list[torch.Tensor]) -> torch.Tensor:
    """Indices sorting by keys[0], then keys[1], ... (stable sorts from the last key to the first)."""
    import torch

    idx = torch.arange(keys[0].numel(), device=keys[0].device)
    for k in reversed(keys):
        idx = idx[torch.sort(k[idx], stable=True).indices]
    return idx


def _match_pairs_torch(b: torch.Tensor, lab: torch.Tensor, metric: str, threshold: float) -> tuple[Any, Any]:
    import torch

    n = b.shape[0]
    dev = b.device
    span = float((b[:, 0::2].max() - b[:, 0::2].min()).item()) + 1.0
    shift = lab.to(torch.float64) * span
    x1 = b[:, 0].to(torch.float64) + shift
    x2 = b[:, 2].to(torch.float64) + shift
    xs = torch.sort(x1, stable=True).indices
    hi = torch.searchsorted(x1[xs], x2[xs], right=False)
    first = torch.arange(1, n + 1, device=dev)
    counts = (hi - first).clamp(min=0)
    a = torch.repeat_interleave(torch.arange(n, device=dev), counts)
    starts = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    c = first[a] + torch.arange(a.numel(), device=dev) - starts
    i, j = xs[a], xs[c]
    hit = _ratio_torch(b[i], b[j], metric) >= threshold
    i, j = i[hit], j[hit]
    return torch.minimum(i, j), torch.maximum(i, j)


def _ratio_torch(u: torch.Tensor, v: torch.Tensor, metric: str) -> torch.Tensor:
    import torch

    inter = (torch.minimum(u[:, 2], v[:, 2]) - torch.maximum(u[:, 0], v[:, 0])).clamp(min=0) * (
        torch.minimum(u[:, 3], v[:, 3]) - torch.maximum(u[:, 1], v[:, 1])
    ).clamp(min=0)
    au = (u[:, 2] - u[:, 0]) * (u[:, 3] - u[:, 1])
    av = (v[:, 2] - v[:, 0]) * (v[:, 3] - v[:, 1])
    denom = au + av - inter if metric == "iou" else torch.minimum(au, av)
    return torch.where(denom > 0, inter / torch.where(denom > 0, denom, torch.ones_like(denom)), 0.0)
