"""The Triton Python-backend model: what every model.py of a python-kind repository imports.

It runs inside Triton's Python-backend stub (triton_python_backend_utils is the stub's module, importable
only there): `initialize` builds the runner of this instance from the model config (role, artifact file,
backend) on the device Triton gave the instance; `execute` hands the inputs of the batched requests to
the runner and returns one response per request, an error response for a bad one.

Tensors cross the stub through DLPack (np.from_dlpack, Tensor.from_dlpack), not Tensor.as_numpy /
Tensor(name, array): the stubs that pip ships were built with a pybind11 that reads NumPy 2's dtypes
wrongly (element size 0: as_numpy repeats the first element, outputs are refused as the wrong size).
DLPack carries the element type itself and works under NumPy 1 and 2 alike.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mfssd_deploy.serving.runners import Reply, runner_from_config


def _quiet_capsule_noise(hook: Any = sys.unraisablehook) -> None:
    """NumPy's DLPack capsule destructor reports the stub's renaming of a consumed capsule ("used_dlpack"
    where NumPy expects "used_dltensor") as an unraisable ValueError on every output; the memory is freed
    by the stub (its deleter), so that one message is dropped, every other one still reaches the log."""

    def filtered(unraisable: Any) -> None:
        exc = unraisable.exc_value
        if isinstance(exc, ValueError) and "PyCapsule_GetPointer called with incorrect name" in str(exc):
            return
        hook(unraisable)

    sys.unraisablehook = filtered


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]  # the stub's module

        _quiet_capsule_noise()
        self.pb = pb_utils
        config = json.loads(args["model_config"])
        version_dir = Path(args["model_repository"]) / str(args["model_version"])
        gpu = args.get("model_instance_kind", "CPU") == "GPU"
        self.runner = runner_from_config(config, version_dir, gpu, int(args.get("model_instance_device_id", 0)))

    def _inputs(self, request: Any) -> dict[str, np.ndarray | None]:
        out: dict[str, np.ndarray | None] = {}
        for name in self.runner.inputs:
            tensor = self.pb.get_input_tensor_by_name(request, name)
            out[name] = None if tensor is None else np.from_dlpack(tensor)
        return out

    def _response(self, reply: Reply) -> Any:
        pb = self.pb
        if reply.error is not None or reply.outputs is None:
            return pb.InferenceResponse(output_tensors=[], error=self._error(reply))
        tensors = [pb.Tensor.from_dlpack(n, np.require(a, requirements=("C", "W"))) for n, a in reply.outputs.items()]
        return pb.InferenceResponse(output_tensors=tensors)

    def _error(self, reply: Reply) -> Any:
        """A bad request is the client's error (HTTP 400, gRPC INVALID_ARGUMENT), a failed inference the server's."""
        err = self.pb.TritonError
        code = getattr(err, "INVALID_ARG" if reply.bad_request else "INTERNAL", None)
        message = reply.error or "no outputs"
        return err(message) if code is None else err(message, code)

    def execute(self, requests: list[Any]) -> list[Any]:
        return [self._response(r) for r in self.runner.run([self._inputs(q) for q in requests])]

    def finalize(self) -> None:
        self.runner = None
