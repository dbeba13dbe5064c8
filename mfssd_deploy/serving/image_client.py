"""A client of the image model: encoded files in, Results (original-image pixels, class names) out.

What a client of NAME_image has to do, and nothing more: put the files' bytes into uint8 rows with their
lengths, send them (HTTP or gRPC, tritonclient), read the outputs. No pre- or post-processing: the
server decodes, resizes, runs the model, applies NMS and scales the boxes to each image. The class names
come from the model's `mfssd` parameter (and, per detection, from the `detections` JSON).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mfssd_deploy.errors import MfssdError, require
from mfssd_deploy.runtime.results import Result
from mfssd_deploy.serving.contract import IMAGE_INPUT, IMAGE_INPUT_TYPES, IMAGE_LENGTH, IMAGE_OUTPUTS
from mfssd_deploy.serving.images import image_rows


def read_files(files: Sequence[bytes | str | os.PathLike[str]]) -> list[bytes]:
    return [f if isinstance(f, bytes) else Path(f).read_bytes() for f in files]


class ImageModelClient:
    """ImageModelClient(url, model, protocol="http"|"grpc", timeout_s): detect(files) -> [Result]."""

    def __init__(self, url: str, model: str, protocol: str = "http", timeout_s: float = 60.0) -> None:
        if protocol not in ("http", "grpc"):
            raise MfssdError(f"protocol {protocol!r}: choose http or grpc")
        self.tc = require(f"tritonclient.{protocol}", "triton", "talking to Triton Inference Server")
        self.url, self.model, self.protocol, self.timeout_s = url, model, protocol, timeout_s
        if protocol == "http":
            self.client = self.tc.InferenceServerClient(url, connection_timeout=timeout_s, network_timeout=timeout_s)
        else:
            self.client = self.tc.InferenceServerClient(url)
        self._names: tuple[str, ...] | None = None

    @property
    def class_names(self) -> tuple[str, ...]:
        """From the model's `mfssd` parameter (read once)."""
        if self._names is None:
            from mfssd_deploy.runtime.backends.triton_backend import mfssd_meta

            raw = (self.client.get_model_config(self.model, as_json=True) if self.protocol == "grpc"
                   else self.client.get_model_config(self.model))  # fmt: skip
            self._names = tuple(mfssd_meta(raw, self.model)["config"]["class_names"])
        return self._names

    def inputs(self, files: Sequence[bytes]) -> list[Any]:
        rows, lengths = image_rows(list(files))
        out = []
        for name, array in ((IMAGE_INPUT, rows), (IMAGE_LENGTH, lengths)):
            inp = self.tc.InferInput(name, list(array.shape), IMAGE_INPUT_TYPES[name])
            inp.set_data_from_numpy(array)
            out.append(inp)
        return out

    def infer(self, files: Sequence[bytes]) -> dict[str, np.ndarray]:
        """The raw outputs (contract.IMAGE_OUTPUTS) for encoded files; InferenceServerException on errors."""
        outputs = [self.tc.InferRequestedOutput(n) for n in IMAGE_OUTPUTS]
        kwargs: dict[str, Any] = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        result = self.client.infer(self.model, self.inputs(files), outputs=outputs, **kwargs)
        return {n: result.as_numpy(n) for n in IMAGE_OUTPUTS}

    def detect(self, files: Sequence[bytes | str | os.PathLike[str]]) -> list[Result]:
        data = read_files(files)
        out = self.infer(data)
        return to_results(out, self.class_names, [None if isinstance(f, bytes) else str(f) for f in files])

    def close(self) -> None:
        self.client.close()


def to_results(out: dict[str, np.ndarray], class_names: Sequence[str], sources: Sequence[str | None]) -> list[Result]:
    results = []
    for i, source in enumerate(sources):
        n = int(out["num_dets"][i, 0])
        h, w = (int(v) for v in out["image_size"][i])
        results.append(Result(out["pixel_boxes"][i, :n].astype(np.float32), out["det_scores"][i, :n].astype(np.float32),
                              out["det_classes"][i, :n].astype(np.int64), class_names, (h, w), source))  # fmt: skip
    return results


def documents(out: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """The `detections` output: per image the JSON of Result.to_dict() (boxes in pixels, class names)."""
    return [json.loads(bytes(row)) for row in out["detections"]]
