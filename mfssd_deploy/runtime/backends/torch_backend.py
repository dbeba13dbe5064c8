"""PyTorch backend over a checkpoint, on CPU or CUDA; raw outputs stay on the device for the decode + NMS."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from mfssd_deploy.errors import MfssdError, require_torch


class TorchBackend:
    name = "torch"
    layout = "raw"

    def __init__(self, path: str | os.PathLike[str], device: str = "cpu") -> None:
        torch = require_torch("running a .pt checkpoint")
        from mfssd_deploy.checkpoint import load_model
        from mfssd_deploy.models import config_of

        if device == "cuda" and not torch.cuda.is_available():
            raise MfssdError('device="cuda" but torch sees no CUDA GPU; use device="cpu"')
        self.torch = torch
        self.device = device
        self.model = load_model(path, device)
        self.config = config_of(self.model)
        self.meta: dict[str, Any] = {"config": self.config.to_dict(), "layout": "raw", "precision": "fp32"}
        self.thread_safe = True  # torch inference on one module from several threads is safe

    def infer(self, x: np.ndarray) -> tuple[Any, Any]:
        torch = self.torch
        with torch.inference_mode():
            t = torch.from_numpy(x)
            if self.device != "cpu":
                t = t.pin_memory().to(self.device, non_blocking=True)
            loc, conf = self.model(t)
            scores = conf.softmax(-1)  # like the exported graph: every backend returns probabilities
            if self.device != "cpu":
                # CUDA runs asynchronously: without this the "infer" stage would time the kernel launches
                # and the compute would land in "post" (docs/benchmarking.md: infer = H2D + compute)
                torch.cuda.synchronize()
        return loc, scores
