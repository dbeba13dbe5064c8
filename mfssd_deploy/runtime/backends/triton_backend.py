"""A model served by Triton Inference Server (`mfssd-serve`, or a repository from `mfssd-export --triton`).

The server holds the model, batches requests from many clients and runs them on its GPUs; this
backend sends one pre-processed batch per request (HTTP or gRPC, tritonclient) and hands the
outputs to the Detector, which does the rest as for a local model. The model's `mfssd` parameter
(the ONNX metadata) tells the client the input size, normalisation, classes and layout; the tensor
model of mfssd-serve says "end2end" whatever the artifact (it decodes raw outputs on the server).
Every request has a deadline (`timeout_s`): a server that dies or hangs gives an MfssdError, never a
wait without end, and a response is only used whole (every output present, the batch size right).
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

    def __init__(self, url: str, model: str, protocol: str = "http", version: str = "", client: Any = None,
                 timeout_s: float = 60.0) -> None:  # fmt: skip
        if protocol not in ("http", "grpc"):
            raise MfssdError(f"protocol {protocol!r}: choose http or grpc")
        if timeout_s <= 0:
            raise MfssdError(f"timeout_s must be > 0, got {timeout_s}")
        self.tc = require(f"tritonclient.{protocol}", "triton", "talking to Triton Inference Server")
        self.protocol, self.model, self.version, self.timeout_s = protocol, model, version, timeout_s
        try:
            self._own = client is None
            if client is not None:
                self.client = client
            elif protocol == "http":
                self.client = self.tc.InferenceServerClient(
                    url, connection_timeout=timeout_s, network_timeout=timeout_s
                )
            else:
                self.client = self.tc.InferenceServerClient(url)
            deadline = {"client_timeout": timeout_s} if self._own else {}
            raw = (
                self.client.get_model_config(model, version, as_json=True, **deadline)
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
        # gRPC deadlines are per call; an injected client (a test double, a user's configured client) keeps its own
        kwargs: dict[str, Any] = {"client_timeout": self.timeout_s} if self.protocol == "grpc" and self._own else {}
        try:
            result = self.client.infer(self.model, inputs, model_version=self.version, outputs=outputs, **kwargs)
        except Exception as exc:
            raise MfssdError(f"Triton inference on {self.model!r} failed: {exc}") from exc
        arrays = [result.as_numpy(n) for n in OUTPUTS[self.layout]]
        for name, a in zip(OUTPUTS[self.layout], arrays, strict=True):
            if a is None or a.ndim < 1 or a.shape[0] != x.shape[0]:
                shape = None if a is None else list(a.shape)
                raise MfssdError(f"Triton model {self.model!r} answered without a whole {name!r} (got {shape} for a "
                                 f"batch of {x.shape[0]}): not the model of this metadata?")  # fmt: skip
        return arrays
