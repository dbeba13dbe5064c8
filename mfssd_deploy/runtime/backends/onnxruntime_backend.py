"""ONNX Runtime backend: CPU anywhere (the lean runtime), CUDA / TensorRT execution providers on GPUs."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from mfssd_deploy.artifacts import INPUT, onnx_kind, read_meta
from mfssd_deploy.config import ModelConfig, input_wh_of
from mfssd_deploy.errors import MfssdError

_WARNED: set[Path] = set()  # INT8 files placed for TensorRT already warned about (the CPU speed note below)


def choose_providers(
    device: str,
    available: list[str],
    meta: dict[str, Any],
    trt_cache_dir: str | None,
    options: dict[str, dict],
    max_batch: int | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """Providers by preference for `device`: TensorRT EP > CUDA EP > CPU (pure, so it is testable here).

    With `max_batch`, the TensorRT EP gets an explicit profile (batch 1 to max_batch, tuned for
    max_batch): one engine build, instead of a rebuild whenever a larger batch first arrives.
    """
    if device == "cpu":
        return [("CPUExecutionProvider", options.get("CPUExecutionProvider", {}))]
    if device != "cuda":
        raise MfssdError(f"device {device!r}: use 'cpu' or 'cuda'")
    chosen: list[tuple[str, dict[str, Any]]] = []
    precision = meta.get("precision", "fp32")
    if not onnx_kind(precision, meta.get("layout", "raw")).gpu:
        raise MfssdError(
            "this is the CPU-tuned INT8 model (uint8 activations), which GPUs and TensorRT do not run: on a GPU use "
            "the .int8 (symmetric) model, or device='cpu'"
        )
    if "TensorrtExecutionProvider" in available:
        trt_opts: dict[str, Any] = {
            "trt_fp16_enable": precision == "fp16",  # FP32 models: pass {"trt_fp16_enable": True} to opt in
            "trt_int8_enable": precision == "int8-qdq",  # explicit Q/DQ quantization
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": trt_cache_dir or os.path.join("engines", "ort_trt_cache"),
            "trt_timing_cache_enable": True,
        }
        if max_batch is not None:
            w, h = input_wh_of(meta["config"]["input_size"])  # a side, or (W, H) at native resolution
            trt_opts.update({f"trt_profile_{k}_shapes": f"{INPUT}:{b}x3x{h}x{w}"
                             for k, b in (("min", 1), ("opt", max_batch), ("max", max_batch))})  # fmt: skip
        trt_opts.update(options.get("TensorrtExecutionProvider", {}))
        chosen.append(("TensorrtExecutionProvider", trt_opts))
    if "CUDAExecutionProvider" in available:
        chosen.append(("CUDAExecutionProvider", options.get("CUDAExecutionProvider", {})))
    if not chosen:
        raise MfssdError(
            'device="cuda" but this onnxruntime has no CUDA or TensorRT provider: pip install "mfssd-deploy[gpu]"'
        )
    chosen.append(("CPUExecutionProvider", {}))
    return chosen


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(
        self,
        path: str | os.PathLike[str],
        device: str = "cpu",
        provider_options: dict[str, dict] | None = None,
        trt_cache_dir: str | None = None,
        intra_op_threads: int = 0,
        spinning: bool = True,
        max_batch: int | None = None,
    ) -> None:
        import onnxruntime as ort

        p = Path(path)
        if not p.is_file():
            raise MfssdError(f"model not found: {p}")
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.intra_op_num_threads = intra_op_threads
        # Idle intra-op threads spin for a while after each run: lower latency for a model that has the
        # cores to itself (measured: 1.5 ms of 10 at batch 1, narrow model), but they steal the cores
        # from whatever runs next in the process (another model, a decode thread): spinning=False then.
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if device == "cpu":
            # The memory pattern pre-plans one block per input shape on the second run and keeps it beside the
            # arena: measured on the full-size end2end file at batch 8, 1,137 MB resident with it, 638 MB
            # without, the same 2.00 s per call (the INT8 s8 file: 850 vs 440 MB).
            so.enable_mem_pattern = False
        try:
            # On CUDA the provider options depend on the precision in the metadata, read from the file.
            if device == "cpu":
                providers = choose_providers("cpu", [], {}, None, provider_options or {})
            else:
                providers = choose_providers(
                    device,
                    ort.get_available_providers(),
                    read_meta(p),
                    trt_cache_dir,
                    provider_options or {},
                    max_batch,
                )
            self.session = ort.InferenceSession(
                str(p), so, providers=[n for n, _ in providers], provider_options=[o for _, o in providers]
            )
        except MfssdError:
            raise
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types for damaged files
            raise MfssdError(f"{p} is not a loadable ONNX model ({type(exc).__name__}: {str(exc)[:120]})") from exc
        self.meta = read_meta(p)
        self.config = ModelConfig.from_dict(self.meta["config"])
        self.layout = str(self.meta["layout"])
        self.device = device
        self.providers = self.session.get_providers()
        if self.providers == ["CPUExecutionProvider"] and self.meta.get("precision") == "int8-qdq" and p not in _WARNED:
            _WARNED.add(p)  # once per file and process
            # The symmetric INT8 file is placed for TensorRT (Conv inputs quantized, outputs float): ONNX
            # Runtime's CPU kernels fuse only Q -> Conv -> Q into QLinearConv, so here it runs slower than the
            # FP32 file (about half its speed, benchmarks/int8_placement). Say so rather than let "INT8" be
            # silently slow.
            logging.getLogger("mfssd_deploy").warning(
                "%s: this INT8 file is quantized for TensorRT; ONNX Runtime runs it on the CPU slower than FP32. "
                'For fast CPU INT8 run it in OpenVINO (pip install "mfssd-deploy[openvino]": the default for this '
                "file where installed) or export the CPU file too (mfssd-export --int8 --int8-cpu: NAME.int8u8.*)",
                p.name,
            )
        names = [i.name for i in self.session.get_inputs()]
        if names != [INPUT]:
            raise MfssdError(f"{p}: expected one input named 'images', found {names}")
        self.thread_safe = True  # InferenceSession.run is thread-safe

    def infer(self, x: np.ndarray) -> list[np.ndarray]:
        return list(self.session.run(None, {INPUT: x}))
