"""Detector: one API over a .pt checkpoint, an .onnx model or a TensorRT .engine.

pre-process (OpenCV, once per batch into one contiguous array) -> backend.infer ->
[raw: decode against the priors + batched NMS on the backend's device] | [end2end: unpack] ->
rescale to original pixels -> Result per image. Importing this module never imports torch: the
end2end ONNX path runs on numpy, OpenCV and ONNX Runtime alone.

Native resolution (input_size=(W, H), or an artifact exported with mfssd-export --input-size WxH): the whole
frame in one call, with the priors of the larger feature maps; boxes come back in image pixels as always.

Tiled inference (tile=..., mfssd_deploy/geometry/tiling.py): every image of a call is cut into overlapping tiles
(+ the whole frame resized), all crops of all images go through the backend in batches of batch_size,
boxes are mapped to image pixels and merged per image and class.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mfssd_deploy.config import ModelConfig, NMSConfig
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.geometry import Geometry, scale_to_image
from mfssd_deploy.geometry.padded import unpack_end2end
from mfssd_deploy.geometry.tiling import Tiling, resolve_tiling
from mfssd_deploy.runtime.inputs import ImageLike, load_images
from mfssd_deploy.runtime.results import Result
from mfssd_deploy.runtime.streaming import Frame

TileArg = int | tuple[int, int] | Tiling | bool | None


class Detector:
    """Detector(model, device="cpu"|"cuda", backend=None, conf=None, iou=None, max_det=None, batch_size=None,
    tile=None, overlap=None).

    `batch_size`: how many images (or tiles) go through the backend per call; default 8, and for a TensorRT
    engine the largest batch of its profile, so the tiles of a large frame fill the engine (a batch_size beyond
    the profile is refused here, not at the first call).

    `model` is a .pt, .onnx or .engine path (default: the bundled demo model: the checkpoint where torch is
    installed, its FP32 end2end ONNX export in the lean install, see demo_assets.default_model); the layout and the
    pre/post-processing settings come from the artifact's own metadata. conf/iou/max_det default to
    the model's. For an end2end artifact the NMS is inside the graph: conf may only be raised and
    max_det lowered (exact: NMS never lets a lower score suppress a higher one), iou is fixed at export.

    Native resolution, for small objects in large frames: `input_size=(1920, 1080)` (or "1920x1080") runs a .pt
    checkpoint on whole frames at that size (the network is fully convolutional; the priors follow the larger
    feature maps: ModelConfig.at_input_size): one call per frame, no overlap, no tile borders. An .onnx or
    .engine has the size it was exported for (mfssd-export --input-size WxH), which input_size may only
    repeat. Frames of another size are resized to it, as always.

    Tiled (sliced) inference, for small objects in frames much larger than the model's input:
    `tile=300` (pixels of the original image; (W, H) for other shapes; True: the model's input size) with
    `overlap=0.2` (a fraction of a tile, in [0, 1)) cuts every image into overlapping tiles at native
    resolution (SAHI's grid), plus the whole frame resized (SAHI's "standard prediction"). All crops of
    all images of a call go through the backend in batches of `batch_size`; boxes come back in image
    pixels, merged per image and class: NMS at IoS >= 0.5, boxes cut by an inner tile edge dropped.
    `tile=Tiling(...)` (mfssd_deploy.geometry.tiling) sets the rest: full_frame, merge ("nms" | "greedy_nmm", SAHI's
    default), metric ("ios" | "iou"), threshold, edge ("drop" | "merge"). conf and max_det apply to each
    crop; the merged image is not capped again. Every call (`det(images, tile=...)`, `detect_arrays`,
    `stream`) takes `tile`/`overlap` too: None keeps the Detector's setting (the `tiling` attribute),
    tile=False turns tiling off for that call. Without `tile` nothing changes: each image is resized whole.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        device: str = "cpu",
        backend: str | None = None,
        conf: float | None = None,
        iou: float | None = None,
        max_det: int | None = None,
        batch_size: int | None = None,
        tile: TileArg = None,
        overlap: float | None = None,
        input_size: int | str | tuple[int, int] | None = None,
        **backend_options: Any,
    ) -> None:
        if model is None:
            from mfssd_deploy.demo_assets import default_model

            model = default_model()
        path = Path(model)
        from mfssd_deploy.runtime.backends import DEFAULT_FOR_SUFFIX, make_backend

        if path.suffix.lower() in DEFAULT_FOR_SUFFIX and not path.is_file():
            from mfssd_deploy.demo_assets import model_not_found

            raise model_not_found(path)
        if batch_size is not None and batch_size < 1:
            raise MfssdError(f"batch_size must be >= 1, got {batch_size}")
        made = make_backend(path, backend, device, batch_size or DEFAULT_BATCH, backend_options)
        self._setup(path, device, _batch_for(made, batch_size, path), made, conf, iou, max_det, input_size)
        self.tiling: Tiling | None = resolve_tiling(tile, overlap, self.config.input_size)

    @classmethod
    def from_backend(cls, backend: Any, name: str, *, conf: float | None = None, iou: float | None = None,
                     max_det: int | None = None, batch_size: int = 8, tile: TileArg = None,
                     overlap: float | None = None) -> Detector:  # fmt: skip
        """A Detector over a backend object (e.g. backends.triton_backend.TritonBackend: a model served
        by Triton), with the same pre/post-processing and Results as for a local file."""
        if batch_size < 1:
            raise MfssdError(f"batch_size must be >= 1, got {batch_size}")
        det = cls.__new__(cls)
        det._setup(Path(name), getattr(backend, "device", "remote"), batch_size, backend, conf, iou, max_det)
        det.tiling = resolve_tiling(tile, overlap, det.config.input_size)
        return det

    def _setup(self, path: Path, device: str, batch_size: int, backend: Any, conf: float | None, iou: float | None,
               max_det: int | None, input_size: int | str | tuple[int, int] | None = None) -> None:  # fmt: skip
        self.path = path
        self.device = device
        self.batch_size = batch_size
        self.backend = backend
        self.config: ModelConfig = self.backend.config
        if input_size is not None:
            self.config = _sized_config(self.config, backend.name, path, input_size)
        self.layout: str = self.backend.layout
        self.nms = _nms_settings(self.config.nms, self.layout, conf, iou, max_det)
        if self.layout == "raw":
            from mfssd_deploy.errors import require_torch

            require_torch(f"decoding the raw outputs of {path.name} (or use an end2end .onnx)")
        self._geometry: Geometry | None = None
        # A backend that does not say it is thread-safe (a TensorRT execution context, a user's object) is
        # called by one thread at a time.
        self._lock = None if getattr(backend, "thread_safe", False) else threading.Lock()
        self.last_timing: dict[str, float] = {}

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.config.class_names

    def __repr__(self) -> str:
        return (
            f"Detector({str(self.path)!r}, backend={self.backend.name!r}, layout={self.layout!r}, "
            f"device={self.device!r})"
        )

    def __call__(self, images: ImageLike | Sequence[ImageLike], *, tile: TileArg = None,
                 overlap: float | None = None) -> list[Result]:  # fmt: skip
        """One Result per image, in order; a path, a BGR uint8 array, or a list of them. tile/overlap:
        this call's tiling (None: the Detector's; tile=False: none), see the class docstring."""
        tiling = self.tiling_for(tile, overlap)  # bad settings fail before any image is read
        arrays, names = load_images(images)
        return self.detect_arrays(arrays, names, tile=tiling or False)

    def tiling_for(self, tile: TileArg = None, overlap: float | None = None) -> Tiling | None:
        """The tiling a call with these arguments uses (None: whole images)."""
        return resolve_tiling(tile, overlap, self.config.input_size, getattr(self, "tiling", None))

    def detect_arrays(self, arrays: list[np.ndarray], names: Sequence[str | None] | None = None, *,
                      tile: TileArg = None, overlap: float | None = None) -> list[Result]:  # fmt: skip
        """One Result per BGR uint8 array, in order (tiled when this call's tiling, see tiling_for, says so)."""
        names = list(names) if names is not None else [None] * len(arrays)
        results: list[Result] = []
        timing = {"pre": 0.0, "infer": 0.0, "post": 0.0}
        tiling = self.tiling_for(tile, overlap)
        if tiling is not None:
            results = self._detect_tiled(arrays, names, tiling, timing)
            self.last_timing = timing
            return results
        for start in range(0, len(arrays), self.batch_size):
            chunk = arrays[start : start + self.batch_size]
            t0 = time.perf_counter()
            x = self.preprocess(chunk)
            timing["pre"] += (time.perf_counter() - t0) * 1000
            results += self._run(x, chunk, names[start : start + len(chunk)], timing)
        self.last_timing = timing
        return results

    def _run(self, x: np.ndarray, arrays: Sequence[np.ndarray], names: Sequence[str | None],
             timing: dict[str, float]) -> list[Result]:  # fmt: skip
        t1 = time.perf_counter()
        outputs = self._infer(x)
        t2 = time.perf_counter()
        num, boxes, scores, classes = self._postprocess(outputs)
        results = self._to_results(arrays, names, num, boxes, scores, classes)
        timing["infer"] = timing.get("infer", 0.0) + (t2 - t1) * 1000
        timing["post"] = timing.get("post", 0.0) + (time.perf_counter() - t2) * 1000
        return results

    def stream(self, source: str | int | os.PathLike[str], batch: int | None = None, queue_size: int = 2, *,
               tile: TileArg = None, overlap: float | None = None) -> Iterator[Frame]:  # fmt: skip
        """Frames of a video file, camera index, folder or glob, each with its Result, in order.

        A background thread decodes and pre-processes the next batch (bounded queue) while the
        current one runs. Unreadable files come through with `result=None` and `error` set.
        Tiled (tile=..., or the Detector's tiling): the thread decodes `batch` frames, whose tiles then
        go through the backend together in batches of batch_size.
        """
        from mfssd_deploy.runtime.streaming import open_frames, prefetch

        tiling = self.tiling_for(tile, overlap)
        src = open_frames(source)
        # frames per step: at most 8 by default, so a camera's first result does not wait for an engine's
        # whole profile (its tiles still fill it: they go through in batches of batch_size)
        size = batch or min(self.batch_size, DEFAULT_BATCH)
        prepare = self.preprocess if tiling is None else _decode_only
        for frames, x in prefetch(src.frames(), size, prepare, queue_size):
            if x is None:
                yield from frames
                continue
            images = [f.image for f in frames if f.image is not None]
            if tiling is not None:
                results = self._detect_tiled(images, [f.source for f in frames], tiling, {})
            else:
                results = self._run(x, images, [f.source for f in frames], {})
            for f, r in zip(frames, results, strict=True):
                f.result = r
                yield f

    @property
    def geometry(self) -> Geometry:
        """Pre-processing, prior decoding and the inverse resize of this model (geometry.Geometry)."""
        if self._geometry is None or self._geometry.config is not self.config or self._geometry.nms != self.nms:
            self._geometry = Geometry(self.config, self.nms)
        return self._geometry

    def preprocess(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        return self.geometry.preprocess(arrays)

    def detect_padded(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        """Padded detections of a pre-processed batch (num_dets [B,1], boxes [B,K,4] in [0, 1], scores,
        classes: the end2end layout), under the Detector's lock: what a server hands on to its clients."""
        return self._postprocess(self._infer(x))

    def _infer(self, x: np.ndarray) -> Any:
        if self._lock is None:
            return self.backend.infer(x)
        with self._lock:
            return self.backend.infer(x)

    def _postprocess(self, outputs: Any) -> tuple[np.ndarray, ...]:
        if self.layout == "end2end":
            return unpack_end2end(outputs, self.nms)
        return tuple(t.cpu().numpy() for t in self._decode_raw(outputs))

    def _decode_raw(self, outputs: Any) -> Any:
        """Raw outputs -> PaddedDetections (torch), decoded and NMSed on the device holding the outputs."""
        from mfssd_deploy.errors import require_torch

        torch = require_torch(f"decoding the raw outputs of {self.path.name} (or export an end2end model)")
        loc, conf = outputs
        if not isinstance(loc, torch.Tensor):
            loc, conf = torch.from_numpy(np.asarray(loc)), torch.from_numpy(np.asarray(conf))
        return self.geometry.decode(loc, conf)

    def _to_results(self, arrays: Sequence[np.ndarray], names: Sequence[str | None], num: np.ndarray,
                    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> list[Result]:  # fmt: skip
        out = []
        for i, img in enumerate(arrays):
            h, w = img.shape[:2]
            idx = np.arange(int(num[i, 0]))  # valid rows come first, sorted by score
            b = scale_to_image(boxes[i, idx], h, w)
            out.append(Result(b, scores[i, idx].astype(np.float32), classes[i, idx].astype(np.int64),
                              self.config.class_names, (h, w), names[i]))  # fmt: skip
        return out

    # ---- tiled inference: crops -> batches -> detections in image pixels -> merged per image and class

    def _detect_tiled(self, arrays: Sequence[np.ndarray], names: Sequence[str | None], tiling: Tiling,
                      timing: dict[str, float]) -> list[Result]:  # fmt: skip
        from mfssd_deploy.geometry.tiling import EDGE_MARGIN, crop_views, plan_crops

        crops = plan_crops([a.shape[:2] for a in arrays], tiling)
        margin = EDGE_MARGIN if tiling.edge == "drop" else None
        parts: list[tuple[Any, ...]] = []
        for start in range(0, len(crops), self.batch_size):
            rows = crops[start : start + self.batch_size]
            t0 = time.perf_counter()
            x = self.preprocess(crop_views(arrays, rows))
            t1 = time.perf_counter()
            outputs = self._infer(x)
            t2 = time.perf_counter()
            parts.append(self._tile_detections(outputs, rows, margin))
            timing["pre"] = timing.get("pre", 0.0) + (t1 - t0) * 1000
            timing["infer"] = timing.get("infer", 0.0) + (t2 - t1) * 1000
            timing["post"] = timing.get("post", 0.0) + (time.perf_counter() - t2) * 1000
        t3 = time.perf_counter()
        results = self._merge_tiles(parts, arrays, names, tiling)
        timing["post"] = timing.get("post", 0.0) + (time.perf_counter() - t3) * 1000
        return results

    def _tile_detections(self, outputs: Any, rows: np.ndarray, margin: float | None) -> tuple[Any, ...]:
        """One batch of crops -> (image index, boxes in image pixels, scores, labels) of its valid detections:
        numpy for end2end outputs; torch on the outputs' device for raw ones (decode + NMS there)."""
        from mfssd_deploy.geometry.tiling import map_to_image

        if self.layout == "end2end":
            num, boxes, scores, classes = unpack_end2end(outputs, self.nms)
            px, touch = map_to_image(np.asarray(boxes, np.float32), rows.astype(np.float32), margin)
            valid = (np.arange(px.shape[1])[None, :] < num.reshape(-1, 1)) & ~touch
            image = np.broadcast_to(rows[:, :1], valid.shape)
            return image[valid], px[valid], np.asarray(scores)[valid], np.asarray(classes)[valid].astype(np.int64)
        import torch

        dets = self._decode_raw(outputs)
        dev = dets.boxes.device
        tpx, ttouch = map_to_image(dets.boxes, torch.as_tensor(rows, dtype=torch.float32, device=dev), margin)
        tvalid = (torch.arange(tpx.shape[1], device=dev)[None, :] < dets.num_dets) & ~ttouch
        timage = torch.as_tensor(rows[:, :1], device=dev).expand(tvalid.shape)
        return timage[tvalid], tpx[tvalid], dets.scores[tvalid], dets.classes[tvalid].to(torch.int64)

    def _merge_tiles(self, parts: list[tuple[Any, ...]], arrays: Sequence[np.ndarray], names: Sequence[str | None],
                     tiling: Tiling) -> list[Result]:  # fmt: skip
        """Merge every image's detections at once: the image is folded into the label (image * classes +
        class), so the per-class merge never mixes two images."""
        nc = max(1, len(self.class_names))
        if parts and self.layout != "end2end":
            import torch

            from mfssd_deploy.geometry.tiling import merge_torch

            image, boxes, scores, labels = (torch.cat([p[k] for p in parts]) for k in range(4))
            with torch.inference_mode():
                b, s, lab = merge_torch(boxes, scores, image * nc + labels, tiling.merge, tiling.metric,
                                        tiling.threshold)  # fmt: skip
            mb, ms, ml = b.cpu().numpy(), s.cpu().numpy(), lab.cpu().numpy()
        else:
            from mfssd_deploy.geometry.tiling import merge

            cat = [np.concatenate([p[k] for p in parts]) if parts else np.zeros((0, 4) if k == 1 else 0)
                   for k in range(4)]  # fmt: skip
            mb, ms, ml = merge(cat[1], cat[2], cat[0].astype(np.int64) * nc + cat[3], tiling.merge, tiling.metric,
                               tiling.threshold)  # fmt: skip
        out = []
        for i, img in enumerate(arrays):
            keep = (ml // nc) == i  # merged rows are sorted by score; a subset keeps that order
            out.append(Result(mb[keep], ms[keep], (ml[keep] % nc).astype(np.int64), self.config.class_names,
                              (int(img.shape[0]), int(img.shape[1])), names[i]))  # fmt: skip
        return out


DEFAULT_BATCH = 8


def _batch_for(backend: Any, asked: int | None, path: Path) -> int:
    """The batch size of the backend calls: the one asked for, else 8; a backend with a fixed batch profile
    (a TensorRT engine: `max_batch`) gets its profile's largest by default and refuses more now."""
    top = getattr(backend, "max_batch", None)
    if top is None:
        return asked or DEFAULT_BATCH
    if asked is None:
        return int(top)
    if asked > top:
        raise MfssdError(
            f"batch_size={asked}: {path.name}'s batch profile allows at most {top} per call; use batch_size <= {top} "
            f"or rebuild it with mfssd-export --trt --batch-profile 1,{asked},{asked}"
        )
    return asked


def _sized_config(cfg: ModelConfig, backend: str, path: Path, input_size: int | str | tuple[int, int]) -> ModelConfig:
    """The config for Detector(input_size=...): a checkpoint runs at any size the network takes (priors made
    here for its feature maps); an exported graph or engine only at the size it was built for."""
    from mfssd_deploy.config import parse_input_size

    w, h = parse_input_size(input_size, "input_size")
    if (w, h) == cfg.input_wh:
        return cfg
    if backend != "torch":
        have = "x".join(map(str, cfg.input_wh))
        raise MfssdError(
            f"input_size={w}x{h}: {path.name} was exported for {have} input; re-export the checkpoint with "
            f"mfssd-export --input-size {w}x{h} (a .pt checkpoint runs at any input size)"
        )
    return cfg.at_input_size(w, h)


def _decode_only(images: list[np.ndarray]) -> np.ndarray:
    """stream's background step when tiling: decoding only (the tiles are cut and pre-processed per batch)."""
    return np.empty(0, np.float32)


def _nms_settings(
    base: NMSConfig, layout: str, conf: float | None, iou: float | None, max_det: int | None
) -> NMSConfig:
    if layout == "end2end":
        if iou is not None and abs(iou - base.iou_thresh) > 1e-9:
            raise MfssdError(
                f"iou={iou}: this end2end model has NMS at IoU {base.iou_thresh} inside the graph; "
                "re-export with mfssd-export --iou, or use the raw model"
            )
        if conf is not None and conf < base.conf_thresh:
            raise MfssdError(
                f"conf={conf} is below the {base.conf_thresh} baked into this end2end model: re-export with --conf"
            )
        if max_det is not None and max_det > base.max_det:
            raise MfssdError(
                f"max_det={max_det} exceeds the {base.max_det} of this end2end model: re-export with --max-det"
            )
    return base.override(conf, iou, max_det)
