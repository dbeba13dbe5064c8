"""A Triton Inference Server model repository for exported artifacts.

Users who outgrow one process (dynamic batching across clients, several model instances, several
GPUs, Kubernetes) get an existing serving engine instead of a home-made server: one model per
artifact, `DIR/NAME/config.pbtxt` + `DIR/NAME/1/model.onnx` (onnxruntime backend) or `model.plan`
(tensorrt_plan). Dims are given without the batch axis (Triton adds it from max_batch_size); the
`mfssd` metadata rides along as a model parameter, so a client rebuilds pre/post-processing from
`get_model_config` alone. The config is protobuf text format (tests parse it with tritonclient's
model_config_pb2).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mfssd_deploy.artifacts import INPUT, OUTPUT_TYPES, onnx_kind
from mfssd_deploy.artifacts import OUTPUTS as TENSORS
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.fileio import atomic_path

# dims without the batch axis (P priors, C classes, K max_det); names and types: the artifact contract
DIMS: dict[str, tuple[int | str, ...]] = {
    "loc": ("P", 4), "scores": ("P", "C"),
    "num_dets": (1,), "det_boxes": ("K", 4), "det_scores": ("K",), "det_classes": ("K",),
}  # fmt: skip
OUTPUTS = {layout: tuple((n, f"TYPE_{OUTPUT_TYPES[n]}", DIMS[n]) for n in names) for layout, names in TENSORS.items()}


@dataclass(frozen=True)
class TritonOptions:
    kind: str = "gpu"  # instance group: gpu | cpu
    instances: int = 1  # model instances per device
    max_batch: int = 16  # max_batch_size: the largest batch of the export's profile
    preferred: tuple[int, ...] = (8,)  # dynamic batching: preferred batch sizes
    max_queue_delay_us: int = 2000  # how long a request may wait for a batch to fill
    trt_accelerator: bool = False  # ONNX models on GPU: run through ONNX Runtime's TensorRT EP
    gpus: tuple[int, ...] = ()  # restrict the GPU instance group to these devices (default: all)


def model_name(artifact: Path) -> str:
    """Triton model names: letters, digits, _ and - only (the file name without .onnx/.engine)."""
    stem = artifact.name
    for suffix in (".onnx", ".engine"):
        stem = stem.removesuffix(suffix)
    return re.sub(r"[^A-Za-z0-9_-]", "_", stem)


def _dims(dims: tuple[Any, ...], config: dict[str, Any]) -> list[int]:
    from mfssd_deploy.config import ModelConfig

    cfg = ModelConfig.from_dict(config)
    sizes = {"P": cfg.priors.num_priors, "C": cfg.num_classes, "K": cfg.nms.max_det}
    return [int(sizes[d]) if isinstance(d, str) else int(d) for d in dims]


def _quote(s: str) -> str:
    return json.dumps(s)  # a JSON string literal is a valid protobuf text-format string literal


def config_pbtxt(name: str, meta: dict[str, Any], platform: str, opts: TritonOptions) -> str:
    """The model configuration (protobuf text format) for one artifact with its `mfssd` metadata."""
    cfg = meta["config"]
    layout, precision = meta["layout"], meta.get("precision", "fp32")
    if platform not in ("onnxruntime_onnx", "tensorrt_plan"):
        raise ValueError(platform)
    if opts.kind not in ("gpu", "cpu"):
        raise MfssdError(f"--triton-device {opts.kind!r}: choose gpu or cpu")
    if platform == "tensorrt_plan" and opts.kind != "gpu":
        raise MfssdError("a TensorRT engine runs on a GPU instance group only: use --triton-device gpu")
    if not onnx_kind(precision, layout).gpu and opts.kind == "gpu":
        raise MfssdError(
            f"{name}: the CPU-tuned INT8 model (uint8 activations) cannot run on GPUs: --triton-device cpu"
        )
    if opts.max_batch < 1 or opts.instances < 1 or any(not 1 <= p <= opts.max_batch for p in opts.preferred):
        raise MfssdError(f"Triton batching {opts}: need max_batch >= 1, instances >= 1, 1 <= preferred <= max_batch")
    size = int(cfg["input_size"])
    lines = [
        f"name: {_quote(name)}",
        f"platform: {_quote(platform)}",
        f"max_batch_size: {opts.max_batch}",
        "input [",
        f'  {{ name: "{INPUT}" data_type: TYPE_FP32 format: FORMAT_NCHW dims: [ 3, {size}, {size} ] }}',
        "]",
        "output [",
        ",\n".join(
            f"  {{ name: {_quote(n)} data_type: {t} dims: [ {', '.join(map(str, _dims(d, cfg)))} ] }}"
            for n, t, d in OUTPUTS[layout]
        ),
        "]",
        "instance_group [",
        f"  {{ count: {opts.instances} kind: {'KIND_GPU' if opts.kind == 'gpu' else 'KIND_CPU'}"
        + (f" gpus: [ {', '.join(map(str, opts.gpus))} ]" if opts.gpus and opts.kind == "gpu" else "")
        + " }",
        "]",
        "dynamic_batching {",
        f"  preferred_batch_size: [ {', '.join(map(str, opts.preferred))} ]",
        f"  max_queue_delay_microseconds: {opts.max_queue_delay_us}",
        "}",
    ]
    if platform == "onnxruntime_onnx" and opts.trt_accelerator and opts.kind == "gpu":
        # ONNX Runtime's TensorRT EP inside Triton: INT8 for Q/DQ models, FP16 otherwise
        mode = "INT8" if precision == "int8-qdq" else "FP16"
        lines += [
            "optimization { execution_accelerators { gpu_execution_accelerator: [ {",
            '  name: "tensorrt"',
            f'  parameters {{ key: "precision_mode" value: "{mode}" }}',
            '  parameters { key: "max_workspace_size_bytes" value: "2147483648" }',
            '  parameters { key: "trt_engine_cache_enable" value: "true" }',
            '  parameters { key: "trt_engine_cache_path" value: "/tmp/mfssd_trt_cache" }',
            "} ] } }",
        ]
    lines += [f'parameters {{ key: "mfssd" value: {{ string_value: {_quote(json.dumps(meta, sort_keys=True))} }} }}']
    return "\n".join(lines) + "\n"


def _write(repo: Path, name: str, source: Path, filename: str, config: str) -> Path:
    model_dir = repo / name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    with atomic_path(model_dir / "1" / filename) as tmp:
        shutil.copyfile(source, tmp)
    with atomic_path(model_dir / "config.pbtxt") as tmp:
        tmp.write_text(config)
    return model_dir


def add_onnx(repo: Path, onnx_path: Path, opts: TritonOptions) -> Path:
    """DIR/NAME/{config.pbtxt, 1/model.onnx} for an exported ONNX file (metadata read from the file)."""
    import onnx

    from mfssd_deploy.exporters.onnx_export import read_metadata

    meta = read_metadata(onnx.load(str(onnx_path), load_external_data=False))
    name = model_name(onnx_path)
    return _write(repo, name, onnx_path, "model.onnx", config_pbtxt(name, meta, "onnxruntime_onnx", opts))


def add_engine(repo: Path, engine_path: Path, opts: TritonOptions) -> Path:
    """DIR/NAME/{config.pbtxt, 1/model.plan} for a TensorRT engine; max_batch_size from its profile."""
    from mfssd_deploy.engine_meta import read_engine_meta

    meta = read_engine_meta(engine_path)
    profile = meta.get("profiles", {}).get(INPUT)
    if not profile:
        raise MfssdError(f"{engine_path.name}.json has no batch profile: rebuild the engine with mfssd-export --trt")
    max_batch = int(profile["max"][0])
    preferred = tuple(p for p in opts.preferred if p <= max_batch) or (int(profile["opt"][0]),)
    name = model_name(engine_path)
    eopts = TritonOptions(opts.kind, opts.instances, max_batch, preferred, opts.max_queue_delay_us, False, opts.gpus)
    return _write(repo, name, engine_path, "model.plan", config_pbtxt(name, meta, "tensorrt_plan", eopts))
