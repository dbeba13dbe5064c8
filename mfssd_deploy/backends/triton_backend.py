"""A model served by Triton Inference Server (a repository from `mfssd-export --triton`).

The server holds the model, batches requests from many clients and runs them on its GPUs; this
backend sends one pre-processed batch per request (HTTP or gRPC, tritonclient) and hands the
outputs to the Detector, which does the rest as for a local model. The model's `mfssd` parameter
(the ONNX metadata) tells the client the input size, normalisation, classes and layout.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mfssd_deploy.artifacts import INPUT, OUTPUTS
from mfssd_deploy.config import ModelConfig
from mfssd_deploy.errors import MfssdError, require


def mfssd_meta(model_config: dict[str, Any], model: str) -> dict[str, Any]:
    """The `mfssd` model parameter from get_model_config (HTTP JSON, or gRPC as_json=True)."""
    cfg = model_config.get("config", model_config)
    param = cfg.get("parameters", {}).get("mfssd", {})
    text = param.get("string_value") or param.get("stringValue")
    if not text:
        raise MfssdError(
            f"Triton model {model!r} has no 'mfssd' parameter: serve a repository from mfssd-export --triton"
        )
    from mfssd_deploy.artifacts import parse_meta

    return parse_meta(text, f"Triton model {model!r}", "serve a repository from mfssd-export --triton")


class TritonBackend:
    name = "triton"

    def __init__(self, url: str, model: str, protocol: str = "http", version: str = "", client: Any = None) -> None:
        if protocol not in ("http", "grpc"):
            raise MfssdError(f"protocol {protocol!r}: choose http or grpc")
        self.tc = require(f"tritonclient.{protocol}", "triton", "talking to Triton Inference Server")
        self.protocol, self.model, self.version = protocol, model, version
        try:
            self.client = client if client is not None else self.tc.InferenceServerClient(url)
            raw = (
                self.client.get_model_config(model, version, as_json=True)
                if protocol == "grpc"
                else self.client.get_model_config(model, version)
            )
        except MfssdError:
            raise
        except Exception as exc:  # tritonclient raises InferenceServerException / connection errors
            raise MfssdError(f"Triton at {url} ({protocol}): cannot read model {model!r}: {exc}") from exc
        self.meta = mfssd_meta(raw, model)
        self.config = ModelConfig.from_dict(self.meta["config"])
        self.layout = str(self.meta["layout"])
        self.device = "remote"
        self.thread_safe = True  # each call is its own request to the server

    def request(self, x: np.ndarray) -> tuple[list[Any], list[Any]]:
        """The inputs and requested outputs of one inference call on the batch `x` [B,3,H,W] float32."""
        inp = self.tc.InferInput(INPUT, list(x.shape), "FP32")
        inp.set_data_from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        return [inp], [self.tc.InferRequestedOutput(n) for n in OUTPUTS[self.layout]]

    def infer(self, x: np.ndarray) -> list[np.ndarray]:
        inputs, outputs = self.request(x)
        try:
            result = self.client.infer(self.model, inputs, model_version=self.version, outputs=outputs)
        except Exception as exc:
            raise MfssdError(f"Triton inference on {self.model!r} failed: {exc}") from exc
        return [result.as_numpy(n) for n in OUTPUTS[self.layout]]
