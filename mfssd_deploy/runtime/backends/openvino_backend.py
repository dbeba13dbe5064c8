"""OpenVINO backend: our ONNX files on Intel CPUs (and, untested here, Intel GPUs / NPUs) without conversion.

OpenVINO reads the .onnx directly (raw, end2end with NMS, INT8 Q/DQ, FP16), so there is no extra
artifact to export or keep in sync. Two settings matter for correctness:

* inference precision: on CPUs with AMX / AVX512-BF16 OpenVINO runs FP32 models in bf16 by default,
  which moves scores (by up to 0.03 on the demo model) and changes end2end detection counts. We ask
  for f32 unless told otherwise, so the results match ONNX Runtime, torch and TensorRT FP32.
* thread safety: an InferRequest is not thread-safe, a CompiledModel is. One compiled model serves
  a pool (queue) of InferRequests; each `infer` takes one, runs, copies the outputs and returns it,
  so concurrent callers (e.g. a Detector shared by threads) are safe; with performance_hint="THROUGHPUT"
  (several CPU streams) they also run in parallel, up to the pool size.

Known limit, seen here (OpenVINO 2026.4 beside torch 2.14 on one CPU process): after OpenVINO has run,
PyTorch training and pruning in the same process crashed with a segmentation fault (inference with both
is fine). Train or prune in another process than the one serving with OpenVINO; the test suite runs the
OpenVINO tests in their own process for the same reason.
"""

from __future__ import annotations

import os
import queue
from pathlib import Path
from typing import Any

import numpy as np

from mfssd_deploy.artifacts import INPUT, OUTPUTS, read_meta
from mfssd_deploy.config import ModelConfig
from mfssd_deploy.errors import MfssdError, require

PRECISION_HINTS = ("f32", "bf16", "f16")
PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT")


def openvino_device(device: str) -> str:
    """Our device names to OpenVINO's: "cpu" -> "CPU"; OpenVINO's own strings ("GPU.0", "AUTO:GPU,CPU") pass."""
    if device.lower() == "cpu":
        return "CPU"
    if device.lower().startswith("cuda"):
        raise MfssdError(
            f"device {device!r}: OpenVINO does not run on NVIDIA GPUs; use backend='onnxruntime' or 'tensorrt' "
            "there, or an OpenVINO device ('CPU', 'GPU' = Intel GPU, 'NPU', 'AUTO')"
        )
    return device


def read_onnx(path: Path) -> Any:
    """The file through OpenVINO's ONNX frontend alone: core.read_model would try every frontend on a
    damaged file (TensorFlow's logs parse errors to stderr) and then name none of their errors."""
    from openvino.frontend import FrontEndManager

    try:
        frontend = FrontEndManager().load_by_framework("onnx")
        return frontend.convert(frontend.load(str(path)))
    except Exception as exc:  # OpenVINO raises GeneralFailure / RuntimeError for unreadable files
        raise MfssdError(f"{path} is not a loadable ONNX model ({type(exc).__name__}: {_summary(exc)})") from exc


class OpenVinoBackend:
    """OpenVinoBackend(path, device="cpu", precision_hint="f32", performance_hint="LATENCY", threads=0).

    `device`: "cpu" (tested) or any OpenVINO device string passed through: "GPU" (Intel GPU), "NPU",
    "AUTO" (untested here). `precision_hint`: "f32" (default: matches the other backends), "bf16"
    (faster on CPUs with AMX / AVX512-BF16, results differ), "f16" (GPU), or None for the device's own
    default. `threads`: INFERENCE_NUM_THREADS (0: OpenVINO decides). `requests`: size of the pool of
    infer requests, i.e. how many threads can infer at once (default: the compiled model's
    OPTIMAL_NUMBER_OF_INFER_REQUESTS, at least 2). The batch axis stays dynamic: any batch from 1 up.
    """

    name = "openvino"
    thread_safe = True  # one CompiledModel, a queue of InferRequests (each used by one thread at a time)

    def __init__(
        self,
        path: str | os.PathLike[str],
        device: str = "cpu",
        precision_hint: str | None = "f32",
        performance_hint: str = "LATENCY",
        threads: int = 0,
        requests: int | None = None,
    ) -> None:
        ov = require("openvino", "openvino", "the OpenVINO backend")
        p = Path(path)
        if not p.is_file():
            raise MfssdError(f"model not found: {p}")
        if precision_hint is not None and precision_hint not in PRECISION_HINTS:
            raise MfssdError(f"precision_hint {precision_hint!r}: use one of {', '.join(PRECISION_HINTS)} or None")
        if performance_hint not in PERFORMANCE_HINTS:
            raise MfssdError(f"performance_hint {performance_hint!r}: use {' or '.join(PERFORMANCE_HINTS)}")
        if threads < 0 or (requests is not None and requests < 1):
            raise MfssdError(f"threads must be >= 0 and requests >= 1, got threads={threads}, requests={requests}")
        target = openvino_device(device)
        config: dict[str, str] = {"PERFORMANCE_HINT": performance_hint}
        if precision_hint is not None:
            config["INFERENCE_PRECISION_HINT"] = precision_hint
        if threads:
            config["INFERENCE_NUM_THREADS"] = str(threads)
        model = read_onnx(p)
        # Metadata before the compile: a foreign ONNX is refused before a compile that might fail otherwise.
        self.meta = read_meta(p)
        self.config = ModelConfig.from_dict(self.meta["config"])
        self.layout = str(self.meta["layout"])
        inputs = [i.get_any_name() for i in model.inputs]
        outputs = [o.get_any_name() for o in model.outputs]
        self.output_names = OUTPUTS[self.layout]
        if inputs != [INPUT] or sorted(outputs) != sorted(self.output_names):
            raise MfssdError(f"{p}: unexpected I/O tensors {inputs} -> {outputs} for the {self.layout} layout")
        core = ov.Core()
        try:
            self.compiled = core.compile_model(model, target, config)
        except Exception as exc:
            raise MfssdError(
                f"{p}: OpenVINO cannot compile it for {target!r} with {config} "
                f"(available devices: {', '.join(core.available_devices)}): {_summary(exc)}"
            ) from exc
        self.device = device
        self.precision_hint = precision_hint
        self.logits = False  # softmax is inside the graph
        self._ports = [self.compiled.output(n) for n in self.output_names]
        n = requests or max(2, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self._pool: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(n):
            self._pool.put(self.compiled.create_infer_request())
        self.requests = n

    @property
    def inference_precision(self) -> str:
        """What the device actually runs (e.g. "f32", "bf16"), to check the hint took effect."""
        return str(self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name())

    def infer(self, x: np.ndarray) -> list[np.ndarray]:
        w, h = self.config.input_wh
        if x.ndim != 4 or x.shape[0] < 1 or tuple(x.shape[1:]) != (3, h, w):
            raise MfssdError(f"OpenVINO backend: expected a [B,3,{h},{w}] batch, got shape {tuple(x.shape)}")
        request = self._pool.get()  # blocks while every request is busy in another thread
        try:
            # share_inputs: no copy of the batch (the call is synchronous, x outlives it);
            # share_outputs=False: the results are copies, safe after the request goes back to the pool.
            images = np.ascontiguousarray(x, dtype=np.float32)
            result = request.infer({INPUT: images}, share_inputs=True, share_outputs=False)
            return [np.asarray(result[port]) for port in self._ports]
        finally:
            self._pool.put(request)


def _summary(exc: BaseException) -> str:
    lines = [s.strip() for s in str(exc).splitlines() if s.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:160]
