"""Detector: one API over a .pt checkpoint, an .onnx model or a TensorRT .engine.

pre-process (OpenCV, once per batch into one contiguous array) -> backend.infer ->
[raw: decode against the priors + batched NMS on the backend's device] | [end2end: unpack] ->
rescale to original pixels -> Result per image. Importing this module never imports torch: the
end2end ONNX path runs on numpy, OpenCV and ONNX Runtime alone.
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
from mfssd_deploy.inputs import ImageLike, load_images
from mfssd_deploy.padded import unpack_end2end
from mfssd_deploy.preprocess import preprocess_batch, scale_to_image
from mfssd_deploy.results import Result
from mfssd_deploy.streaming import Frame


class Detector:
    """Detector(model, device="cpu"|"cuda", backend=None, conf=None, iou=None, max_det=None).

    `model` is a .pt, .onnx or .engine path (default: the bundled demo model: the checkpoint where torch is
    installed, its FP32 end2end ONNX export in the lean install, see bundled.default_model); the layout and the
    pre/post-processing settings come from the artifact's own metadata. conf/iou/max_det default to
    the model's. For an end2end artifact the NMS is inside the graph: conf may only be raised and
    max_det lowered (exact: NMS never lets a lower score suppress a higher one), iou is fixed at export.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        device: str = "cpu",
        backend: str | None = None,
        conf: float | None = None,
        iou: float | None = None,
        max_det: int | None = None,
        batch_size: int = 8,
        **backend_options: Any,
    ) -> None:
        if model is None:
            from mfssd_deploy.bundled import default_model

            model = default_model()
        path = Path(model)
        from mfssd_deploy.backends import DEFAULT_FOR_SUFFIX, make_backend

        if path.suffix.lower() in DEFAULT_FOR_SUFFIX and not path.is_file():
            raise MfssdError(f"model not found: {path}")
        if batch_size < 1:
            raise MfssdError(f"batch_size must be >= 1, got {batch_size}")
        made = make_backend(path, backend, device, batch_size, backend_options)
        self._setup(path, device, batch_size, made, conf, iou, max_det)

    @classmethod
    def from_backend(cls, backend: Any, name: str, *, conf: float | None = None, iou: float | None = None,
                     max_det: int | None = None, batch_size: int = 8) -> Detector:  # fmt: skip
        """A Detector over a backend object (e.g. backends.triton_backend.TritonBackend: a model served
        by Triton), with the same pre/post-processing and Results as for a local file."""
        if batch_size < 1:
            raise MfssdError(f"batch_size must be >= 1, got {batch_size}")
        det = cls.__new__(cls)
        det._setup(Path(name), getattr(backend, "device", "remote"), batch_size, backend, conf, iou, max_det)
        return det

    def _setup(self, path: Path, device: str, batch_size: int, backend: Any, conf: float | None, iou: float | None,
               max_det: int | None) -> None:  # fmt: skip
        self.path = path
        self.device = device
        self.batch_size = batch_size
        self.backend = backend
        self.config: ModelConfig = self.backend.config
        self.layout: str = self.backend.layout
        self.nms = _nms_settings(self.config.nms, self.layout, conf, iou, max_det)
        if self.layout == "raw":
            from mfssd_deploy.errors import require_torch

            require_torch(f"decoding the raw outputs of {path.name} (or use an end2end .onnx)")
        self._priors: Any = None
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

    def __call__(self, images: ImageLike | Sequence[ImageLike]) -> list[Result]:
        """One Result per image, in order; a path, a BGR uint8 array, or a list of them."""
        arrays, names = load_images(images)
        return self.detect_arrays(arrays, names)

    def detect_arrays(self, arrays: list[np.ndarray], names: Sequence[str | None] | None = None) -> list[Result]:
        names = list(names) if names is not None else [None] * len(arrays)
        results: list[Result] = []
        timing = {"pre": 0.0, "infer": 0.0, "post": 0.0}
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

    def stream(self, source: str | int | os.PathLike[str], batch: int | None = None,
               queue_size: int = 2) -> Iterator[Frame]:  # fmt: skip
        """Frames of a video file, camera index, folder or glob, each with its Result, in order.

        A background thread decodes and pre-processes the next batch (bounded queue) while the
        current one runs. Unreadable files come through with `result=None` and `error` set.
        """
        from mfssd_deploy.streaming import open_source, prefetch

        src = open_source(source)
        size = batch or self.batch_size
        for frames, x in prefetch(src.frames(), size, self.preprocess, queue_size):
            if x is None:
                yield from frames
                continue
            results = self._run(x, [f.image for f in frames if f.image is not None],
                                [f.source for f in frames], {})  # fmt: skip
            for f, r in zip(frames, results, strict=True):
                f.result = r
                yield f

    def preprocess(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        c = self.config
        return preprocess_batch(arrays, c.input_size, c.mean, c.std, c.color)

    def _infer(self, x: np.ndarray) -> Any:
        if self._lock is None:
            return self.backend.infer(x)
        with self._lock:
            return self.backend.infer(x)

    def _postprocess(self, outputs: Any) -> tuple[np.ndarray, ...]:
        if self.layout == "end2end":
            return unpack_end2end(outputs, self.nms)
        from mfssd_deploy.errors import require_torch

        torch = require_torch(f"decoding the raw outputs of {self.path.name} (or export an end2end model)")
        from mfssd_deploy.postprocess import postprocess
        from mfssd_deploy.priors import priors_tensor

        loc, conf = outputs
        if not isinstance(loc, torch.Tensor):
            loc, conf = torch.from_numpy(np.asarray(loc)), torch.from_numpy(np.asarray(conf))
        if self._priors is None or self._priors.device != loc.device:
            self._priors = priors_tensor(self.config.priors, loc.device)
        with torch.inference_mode():
            dets = postprocess(loc, conf, self._priors, self.nms, self.config.priors.variances)
        return tuple(t.cpu().numpy() for t in dets)

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
