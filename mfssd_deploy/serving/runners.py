"""One execution of a served model: the requests of one dynamic batch in, one reply per request out.

Plain numpy, no Triton import: python_model.py hands the requests' input arrays over and turns the
replies into responses, and tests call the runners directly. A bad request gets its own error and
the others in the same batch are still answered; the requests that pass are run as one batch.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mfssd_deploy.artifacts import INPUT, OUTPUT_TYPES
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.runtime.detector import Detector
from mfssd_deploy.serving.contract import (
    IMAGE_INPUT,
    IMAGE_LENGTH,
    IMAGE_OUTPUT_TYPES,
    IMAGE_OUTPUTS,
    IMAGE_ROLE,
    NUMPY_TYPES,
    PARAM_ARTIFACT,
    PARAM_BACKEND,
    PARAM_MAX_IMAGE_BYTES,
    PARAM_ROLE,
    PARAM_THREADS,
    ROLES,
    TENSOR_OUTPUTS,
    TENSOR_ROLE,
)
from mfssd_deploy.serving.images import decode_image

log = logging.getLogger("mfssd_deploy.serving")


@dataclass
class Reply:
    """The outputs of one request (name -> array with its batch axis), or the error it gets instead."""

    outputs: dict[str, np.ndarray] | None = None
    error: str | None = None
    bad_request: bool = True  # an error is the request's (invalid argument), unless inference failed (internal)


def error_text(exc: BaseException) -> str:
    """The one line a client sees: our messages as they are, anything else with its type."""
    if isinstance(exc, MfssdError):
        return str(exc)
    return f"inference failed ({type(exc).__name__}: {str(exc)[:300]})"


def make_detector(artifact: Path, backend: str, gpu: bool, device_id: int, max_batch: int, threads: int) -> Detector:
    """The Detector one model instance runs: on its CPU or on the GPU Triton gave the instance."""
    from mfssd_deploy.runtime.backends import DEFAULT_FOR_SUFFIX

    name = backend or DEFAULT_FOR_SUFFIX.get(artifact.suffix.lower(), "")
    options: dict[str, Any] = {}
    device = f"cuda:{device_id}" if gpu else "cpu"
    if name == "onnxruntime":
        # Several instances (and the two models) share the cores: idle threads must not spin on them.
        options.update(spinning=False, intra_op_threads=threads)
        if gpu:
            device = "cuda"  # ONNX Runtime takes the device index as a provider option
            options["provider_options"] = {p: {"device_id": device_id} for p in
                                           ("CUDAExecutionProvider", "TensorrtExecutionProvider")}  # fmt: skip
    return Detector(artifact, device=device, backend=backend or None, batch_size=max_batch, **options)


def end2end_outputs(det: Detector, x: np.ndarray) -> list[np.ndarray]:
    """The artifact's outputs on the pre-processed batch `x` in the end2end layout, through the Detector's
    public call (its lock; a raw artifact decoded and NMS'd with its own settings, as its end2end export
    would do inside the graph)."""
    arrays = det.detect_padded(x)
    return [np.asarray(a).astype(NUMPY_TYPES[OUTPUT_TYPES[n]], copy=False)
            for n, a in zip(TENSOR_OUTPUTS, arrays, strict=True)]  # fmt: skip


class TensorRunner:
    """The tensor model: `images` FP32 [b,3,S,S] per request -> num_dets, det_boxes, det_scores, det_classes."""

    inputs: tuple[str, ...] = (INPUT,)

    def __init__(self, det: Detector, max_batch: int) -> None:
        self.det, self.max_batch = det, max_batch
        self.width, self.height = det.config.input_wh

    def check(self, x: np.ndarray | None) -> str | None:
        w, h = self.width, self.height
        if x is None:
            return f"the request has no input {INPUT!r}"
        if x.dtype != np.float32:
            return f"input {INPUT!r} has dtype {x.dtype}: send FP32 (float32)"
        if x.ndim == 3 or (x.ndim == 4 and x.shape[0] == 0):  # Triton hands a batch of 0 over without its axis
            return f"input {INPUT!r} is an empty batch (shape {list(x.shape)}): send [batch >= 1, 3, {h}, {w}]"
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, h, w):
            return f"input {INPUT!r} has shape {list(x.shape)}: send [batch, 3, {h}, {w}] (pre-processed images)"
        if x.shape[0] > self.max_batch:
            return f"batch {x.shape[0]} is over this model's max_batch_size {self.max_batch}: split the request"
        if not np.isfinite(x).all():
            return f"input {INPUT!r} contains NaN or infinity: send finite pre-processed pixels"
        return None

    def run(self, requests: list[dict[str, np.ndarray | None]]) -> list[Reply]:
        inputs = [r.get(INPUT) for r in requests]
        replies = [Reply(error=self.check(x)) for x in inputs]
        good = [
            (i, x) for i, (r, x) in enumerate(zip(replies, inputs, strict=True)) if r.error is None and x is not None
        ]
        if not good:
            return replies
        xs = [x for _, x in good]
        try:
            batch = np.concatenate(xs) if len(xs) > 1 else xs[0]
            outs = [
                end2end_outputs(self.det, np.ascontiguousarray(batch[start : start + self.max_batch]))
                for start in range(0, batch.shape[0], self.max_batch)
            ]  # Triton's batcher keeps under it anyway
            merged = [np.concatenate([o[k] for o in outs]) for k in range(len(TENSOR_OUTPUTS))]
        except Exception as exc:
            log.exception("tensor model inference failed")
            for i, _ in good:
                replies[i].error, replies[i].bad_request = error_text(exc), False
            return replies
        start = 0
        for i, x in good:
            n = int(x.shape[0])
            replies[i].outputs = {name: np.ascontiguousarray(m[start : start + n])
                                  for name, m in zip(TENSOR_OUTPUTS, merged, strict=True)}  # fmt: skip
            start += n
        return replies


class ImageRunner:
    """The image model: encoded images (uint8 rows + lengths) per request -> detections in original pixels."""

    inputs: tuple[str, ...] = (IMAGE_INPUT, IMAGE_LENGTH)

    def __init__(self, det: Detector, max_batch: int, max_image_bytes: int) -> None:
        self.det, self.max_batch, self.max_image_bytes = det, max_batch, max_image_bytes
        self.k = det.nms.max_det

    def decode(self, rows: np.ndarray | None, lengths: np.ndarray | None) -> list[np.ndarray]:
        if rows is None:
            raise MfssdError(f"the request has no input {IMAGE_INPUT!r}")
        if rows.dtype != np.uint8:
            raise MfssdError(f"input {IMAGE_INPUT!r} has dtype {rows.dtype}: send UINT8 rows of encoded image files")
        if rows.ndim == 1 or (rows.ndim == 2 and rows.shape[0] == 0):  # a batch of 0 arrives without its axis
            raise MfssdError(
                f"input {IMAGE_INPUT!r} is an empty batch (shape {list(rows.shape)}): send at least one image"
            )
        if rows.ndim != 2:
            raise MfssdError(f"input {IMAGE_INPUT!r} has shape {list(rows.shape)}: send [batch, bytes], one file a row")
        b = rows.shape[0]
        if b > self.max_batch:
            raise MfssdError(f"batch {b} is over this model's max_batch_size {self.max_batch}: split the request")
        if lengths is None:
            sizes = [rows.shape[1]] * b
        else:
            if lengths.shape != (b, 1):
                raise MfssdError(
                    f"input {IMAGE_LENGTH!r} has shape {list(lengths.shape)}: send [{b}, 1], one length a row"
                )
            sizes = [int(v) for v in lengths[:, 0]]
            bad = [(j, n) for j, n in enumerate(sizes) if not 0 <= n <= rows.shape[1]]
            if bad:
                j, n = bad[0]
                raise MfssdError(f"{IMAGE_LENGTH} of image {j} is {n}, outside 0..{rows.shape[1]} (the row's length)")
        return [decode_image(rows[j, : sizes[j]], f"image {j} of the request", self.max_image_bytes) for j in range(b)]

    def pack(self, results: list[Any]) -> dict[str, np.ndarray]:
        b, k = len(results), self.k
        out = {n: np.zeros((b, *shape), NUMPY_TYPES[IMAGE_OUTPUT_TYPES[n]]) for n, shape in
               (("num_dets", (1,)), ("pixel_boxes", (k, 4)), ("det_scores", (k,)), ("det_classes", (k,)),
                ("image_size", (2,)))}  # fmt: skip
        docs = []
        for i, r in enumerate(results):
            n = len(r)
            out["num_dets"][i, 0] = n
            out["pixel_boxes"][i, :n] = r.boxes
            out["det_scores"][i, :n] = r.scores
            out["det_classes"][i, :n] = r.labels
            out["image_size"][i] = r.image_shape
            docs.append(json.dumps(r.to_dict(), separators=(",", ":")).encode())
        width = max(len(d) for d in docs)
        out["detections"] = np.frombuffer(b"".join(d.ljust(width) for d in docs), np.uint8).reshape(b, width).copy()
        return {n: out[n] for n in IMAGE_OUTPUTS}

    def run(self, requests: list[dict[str, np.ndarray | None]]) -> list[Reply]:
        replies, decoded = [], []
        for req in requests:
            try:
                decoded.append(self.decode(req.get(IMAGE_INPUT), req.get(IMAGE_LENGTH)))
                replies.append(Reply())
            except MfssdError as exc:
                decoded.append([])
                replies.append(Reply(error=str(exc)))
        arrays = [a for imgs in decoded for a in imgs]
        if not arrays:
            return replies
        try:
            results = self.det.detect_arrays(arrays)
        except Exception as exc:
            log.exception("image model inference failed")
            for r in replies:
                if r.error is None:
                    r.error, r.bad_request = error_text(exc), False
            return replies
        start = 0
        for reply, imgs in zip(replies, decoded, strict=True):
            if reply.error is None:
                reply.outputs = self.pack(results[start : start + len(imgs)])
                start += len(imgs)
        return replies


def string_params(model_config: dict[str, Any]) -> dict[str, str]:
    """The model's string parameters from Triton's JSON model config."""
    return {k: str(v.get("string_value", "")) for k, v in model_config.get("parameters", {}).items()}


def runner_from_config(model_config: dict[str, Any], version_dir: Path, gpu: bool, device_id: int) -> Any:
    """The runner of one model instance, from its config (Triton's JSON) and its version folder."""
    params = string_params(model_config)
    role = params.get(PARAM_ROLE, "")
    name = model_config.get("name", "?")
    if role not in ROLES:
        raise MfssdError(f"model {name!r}: parameter {PARAM_ROLE} is {role!r}, not one of {', '.join(ROLES)}")
    artifact = version_dir / params.get(PARAM_ARTIFACT, "")
    if not params.get(PARAM_ARTIFACT) or not artifact.is_file():
        raise MfssdError(f"model {name!r}: its artifact {artifact} is missing: rewrite the repository")
    max_batch = int(model_config.get("max_batch_size", 0))
    if max_batch < 1:
        raise MfssdError(f"model {name!r}: max_batch_size must be >= 1 (dynamic batching), got {max_batch}")
    det = make_detector(artifact, params.get(PARAM_BACKEND, ""), gpu, device_id, max_batch,
                        int(params.get(PARAM_THREADS, "0") or 0))  # fmt: skip
    if role == TENSOR_ROLE:
        return TensorRunner(det, max_batch)
    assert role == IMAGE_ROLE
    return ImageRunner(det, max_batch, int(params[PARAM_MAX_IMAGE_BYTES]))
