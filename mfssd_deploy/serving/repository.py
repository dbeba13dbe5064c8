"""A Triton Inference Server model repository for exported artifacts.

Users who outgrow one process (dynamic batching across clients, several model instances, several
GPUs, Kubernetes) get an existing serving engine instead of a home-made server. Three kinds
(`write_repository`, `mfssd-export --triton DIR --triton-backend KIND`):

* onnxruntime: one model per ONNX file, `DIR/NAME/config.pbtxt` + `DIR/NAME/1/model.onnx`
  (Triton's onnxruntime backend), and per engine `1/model.plan` (tensorrt_plan);
* tensorrt: the engines alone (tensorrt_plan);
* python: two models per end2end artifact on Triton's Python backend (serving/contract.py): NAME takes
  pre-processed tensors and returns the end2end outputs, NAME_image takes encoded images and returns
  detections in pixels with class names. Each `1/model.py` imports mfssd_deploy.serving.python_model,
  which runs the artifact (kept under its own file name) through the Detector: ONNX Runtime, OpenVINO,
  TensorRT or torch, as it runs locally. `mfssd-serve` writes and serves the same repository.

Dims are given without the batch axis (Triton adds it from max_batch_size); the `mfssd` metadata
rides along as a model parameter, so a client rebuilds pre/post-processing from `get_model_config`
alone. The config is protobuf text format (tests parse it with tritonclient's model_config_pb2, and
the python kind is loaded by a real tritonserver in tests/test_serving.py).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mfssd_deploy.artifacts import INPUT, OUTPUT_TYPES, onnx_kind
from mfssd_deploy.artifacts import OUTPUTS as TENSORS
from mfssd_deploy.errors import MfssdError
from mfssd_deploy.fileio import atomic_path
from mfssd_deploy.serving import contract

log = logging.getLogger("mfssd_deploy")
REPOSITORY_KINDS: tuple[str, ...] = ("onnxruntime", "tensorrt", "python")

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


@dataclass(frozen=True)
class PythonModelOptions:
    """Settings of the python kind's models (model-config parameters that model.py reads)."""

    backend: str = ""  # a Detector backend (e.g. "openvino"); "": the file's default
    threads: int = 0  # ONNX Runtime intra-op threads per instance (0: its default)
    max_image_mb: float = contract.DEFAULT_MAX_IMAGE_MB  # the image model refuses larger encoded images
    image_model: bool = True  # also write NAME_image


# model.py of every python-kind model: the code is the package's, so a server runs what the tests ran
MODEL_PY = '''"""Triton Python-backend model written by mfssd-deploy {version}: the {role} model of {artifact}.

The code is mfssd_deploy.serving.python_model: the Python environment of the server's Python backend
needs mfssd-deploy (and the runtime of the artifact) installed; docs/serving.md says how.
"""

from mfssd_deploy.serving.python_model import TritonPythonModel

__all__ = ["TritonPythonModel"]
'''


def model_name(artifact: Path) -> str:
    """Triton model names: letters, digits, _ and - only (the file name without .onnx/.engine)."""
    stem = artifact.name
    for suffix in (".onnx", ".engine", ".pt"):
        stem = stem.removesuffix(suffix)
    return re.sub(r"[^A-Za-z0-9_-]", "_", stem)


def _dims(dims: tuple[Any, ...], config: dict[str, Any]) -> list[int]:
    from mfssd_deploy.config import ModelConfig

    cfg = ModelConfig.from_dict(config)
    sizes = {"P": cfg.priors.num_priors, "C": cfg.num_classes, "K": cfg.nms.max_det}
    return [int(sizes[d]) if isinstance(d, str) else int(d) for d in dims]


def _input_wh(config: dict[str, Any]) -> tuple[int, int]:
    """(width, height) of the model input: a side, or (W, H) for a native-resolution export."""
    from mfssd_deploy.config import input_wh_of

    return input_wh_of(config["input_size"])


def _quote(s: str) -> str:
    return json.dumps(s)  # a JSON string literal is a valid protobuf text-format string literal


def _check(name: str, meta: dict[str, Any], engine: bool, opts: TritonOptions) -> None:
    layout, precision = meta["layout"], meta.get("precision", "fp32")
    if opts.kind not in ("gpu", "cpu"):
        raise MfssdError(f"--triton-device {opts.kind!r}: choose gpu or cpu")
    if engine and opts.kind != "gpu":
        raise MfssdError("a TensorRT engine runs on a GPU instance group only: use --triton-device gpu")
    if not engine and not onnx_kind(precision, layout).gpu and opts.kind == "gpu":
        raise MfssdError(
            f"{name}: the CPU-tuned INT8 model (uint8 activations) cannot run on GPUs: --triton-device cpu"
        )
    if opts.max_batch < 1 or opts.instances < 1 or any(not 1 <= p <= opts.max_batch for p in opts.preferred):
        raise MfssdError(f"Triton batching {opts}: need max_batch >= 1, instances >= 1, 1 <= preferred <= max_batch")


def _tensors(section: str, tensors: Sequence[tuple[str, str, Sequence[int]]], extra: dict[str, str] | None = None
             ) -> list[str]:  # fmt: skip
    """input [ ... ] / output [ ... ]; `extra`: more fields of a tensor, after its data_type."""
    more = extra or {}
    return [
        f"{section} [",
        ",\n".join(
            f"  {{ name: {_quote(n)} data_type: {t}{more.get(n, '')} dims: [ {', '.join(map(str, d))} ] }}"
            for n, t, d in tensors
        ),
        "]",
    ]


def _scheduling(opts: TritonOptions) -> list[str]:
    return [
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


def _parameters(params: dict[str, str]) -> list[str]:
    return [f"parameters {{ key: {_quote(k)} value: {{ string_value: {_quote(v)} }} }}" for k, v in params.items()]


def config_pbtxt(name: str, meta: dict[str, Any], platform: str, opts: TritonOptions) -> str:
    """The model configuration (protobuf text format) for one artifact with its `mfssd` metadata."""
    cfg = meta["config"]
    layout, precision = meta["layout"], meta.get("precision", "fp32")
    if platform not in ("onnxruntime_onnx", "tensorrt_plan"):
        raise ValueError(platform)
    _check(name, meta, platform == "tensorrt_plan", opts)
    width, height = _input_wh(cfg)
    lines = [
        f"name: {_quote(name)}",
        f"platform: {_quote(platform)}",
        f"max_batch_size: {opts.max_batch}",
        *_tensors("input", [(INPUT, "TYPE_FP32", (3, height, width))], {INPUT: " format: FORMAT_NCHW"}),
        *_tensors("output", [(n, t, _dims(d, cfg)) for n, t, d in OUTPUTS[layout]]),
        *_scheduling(opts),
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
    lines += _parameters({contract.PARAM_META: json.dumps(meta, sort_keys=True)})
    return "\n".join(lines) + "\n"


def python_config_pbtxt(name: str, meta: dict[str, Any], role: str, artifact: str, opts: TritonOptions,
                        py: PythonModelOptions) -> str:  # fmt: skip
    """The config of a python-kind model: `role` tensor (end2end outputs) or image (encoded images)."""
    cfg = meta["config"]
    _check(name, meta, artifact.endswith(".engine"), opts)
    width, height = _input_wh(cfg)
    extra: dict[str, str] = {}
    if role == contract.TENSOR_ROLE:
        inputs: list[tuple[str, str, Sequence[int]]] = [(INPUT, "TYPE_FP32", (3, height, width))]
        outputs = [(n, t, _dims(d, cfg)) for n, t, d in OUTPUTS["end2end"]]
    elif role == contract.IMAGE_ROLE:
        types = contract.IMAGE_INPUT_TYPES
        inputs = [(contract.IMAGE_INPUT, f"TYPE_{types[contract.IMAGE_INPUT]}", (-1,)),
                  (contract.IMAGE_LENGTH, f"TYPE_{types[contract.IMAGE_LENGTH]}", (1,))]  # fmt: skip
        # rows of different lengths are batched together; the length input may be left out
        extra = {contract.IMAGE_INPUT: " allow_ragged_batch: true", contract.IMAGE_LENGTH: " optional: true"}
        outputs = [(n, f"TYPE_{contract.IMAGE_OUTPUT_TYPES[n]}", _dims(contract.IMAGE_DIMS[n], cfg))
                   for n in contract.IMAGE_OUTPUTS]  # fmt: skip
    else:
        raise ValueError(role)
    if py.threads < 0 or py.max_image_mb <= 0:
        raise MfssdError(f"python models: need threads >= 0 and max_image_mb > 0, got {py}")
    lines = [
        f"name: {_quote(name)}",
        'backend: "python"',
        f"max_batch_size: {opts.max_batch}",
        *_tensors("input", inputs, extra),
        *_tensors("output", outputs),
        *_scheduling(opts),
        *_parameters(
            {
                contract.PARAM_META: json.dumps(contract.served_meta(meta), sort_keys=True),
                contract.PARAM_ROLE: role,
                contract.PARAM_ARTIFACT: artifact,
                contract.PARAM_BACKEND: py.backend,
                contract.PARAM_THREADS: str(py.threads),
                contract.PARAM_MAX_IMAGE_BYTES: str(int(py.max_image_mb * 1e6)),
            }
        ),
    ]
    return "\n".join(lines) + "\n"


def _write(repo: Path, name: str, source: Path, filename: str, config: str,
           extra: dict[str, str | Path] | None = None) -> Path:  # fmt: skip
    """DIR/NAME/1/filename (a copy of `source`), the `extra` files of the version folder (text, or a
    file to copy), then config.pbtxt last: a folder with a config is complete."""
    model_dir = repo / name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    with atomic_path(model_dir / "1" / filename) as tmp:
        shutil.copyfile(source, tmp)
    for fname, content in (extra or {}).items():
        with atomic_path(model_dir / "1" / fname) as tmp:
            if isinstance(content, Path):
                shutil.copyfile(content, tmp)
            else:
                tmp.write_text(content)
    with atomic_path(model_dir / "config.pbtxt") as tmp:
        tmp.write_text(config)
    return model_dir


def add_onnx(repo: Path, onnx_path: Path, opts: TritonOptions) -> Path:
    """DIR/NAME/{config.pbtxt, 1/model.onnx} for an exported ONNX file (metadata read from the file)."""
    from mfssd_deploy.artifacts import read_meta

    meta = read_meta(onnx_path)
    name = model_name(onnx_path)
    return _write(repo, name, onnx_path, "model.onnx", config_pbtxt(name, meta, "onnxruntime_onnx", opts))


def add_engine(repo: Path, engine_path: Path, opts: TritonOptions) -> Path:
    """DIR/NAME/{config.pbtxt, 1/model.plan} for a TensorRT engine; max_batch_size from its profile."""
    from mfssd_deploy.artifacts import read_meta

    meta = read_meta(engine_path)
    name = model_name(engine_path)
    eopts = _engine_batching(engine_path, meta, opts)
    return _write(repo, name, engine_path, "model.plan", config_pbtxt(name, meta, "tensorrt_plan", eopts))


def artifact_meta(path: Path) -> dict[str, Any]:
    """The `mfssd` metadata of any artifact the Detector runs (artifacts.read_meta: an engine's sidecar, an
    ONNX file's property, a checkpoint's config), never an inference session."""
    if not path.is_file():
        from mfssd_deploy.demo_assets import model_not_found

        raise model_not_found(path)
    from mfssd_deploy.artifacts import kind_of, read_meta

    if kind_of(path) == "openvino":
        raise MfssdError(f"{path}: serve the ONNX file the IR was converted from (.onnx, .engine or .pt)")
    return read_meta(path)


def _engine_batching(path: Path, meta: dict[str, Any], opts: TritonOptions) -> TritonOptions:
    """An engine's max_batch_size is its profile's maximum (a larger batch would fail inside TensorRT)."""
    profile = meta.get("profiles", {}).get(INPUT)
    if not profile:
        raise MfssdError(f"{path.name}.json has no batch profile: rebuild the engine with mfssd-export --trt")
    max_batch = int(profile["max"][0])
    preferred = tuple(p for p in opts.preferred if p <= max_batch) or (int(profile["opt"][0]),)
    return TritonOptions(opts.kind, opts.instances, max_batch, preferred, opts.max_queue_delay_us, False, opts.gpus)


def add_python(repo: Path, artifact: Path, opts: TritonOptions, py: PythonModelOptions = PythonModelOptions(),
               name: str | None = None) -> list[Path]:  # fmt: skip
    """The python kind for one artifact (.onnx, .engine or .pt): DIR/NAME and DIR/NAME_image, each with
    config.pbtxt, 1/model.py and 1/<the artifact> (an engine's .json sidecar beside it)."""
    meta = artifact_meta(artifact)
    name = name or model_name(artifact)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise MfssdError(f"model name {name!r}: use letters, digits, _ and - only")
    extra: dict[str, str | Path] = {}
    if artifact.suffix.lower() == ".engine":
        opts = _engine_batching(artifact, meta, opts)
        from mfssd_deploy.artifacts import sidecar_path

        extra[artifact.name + ".json"] = sidecar_path(artifact)
    from mfssd_deploy import __version__

    roles = [(name, contract.TENSOR_ROLE)] + ([(contract.image_model_name(name), contract.IMAGE_ROLE)]
                                              if py.image_model else [])  # fmt: skip
    dirs = []
    for model, role in roles:
        config = python_config_pbtxt(model, meta, role, artifact.name, opts, py)
        code = MODEL_PY.format(version=__version__, role=role, artifact=artifact.name)
        dirs.append(_write(repo, model, artifact, artifact.name, config, {"model.py": code, **extra}))
    return dirs


def write_repository(
    repo: Path,
    onnx_files: Sequence[Path],
    engines: Sequence[Path],
    opts: TritonOptions,
    kind: str = "onnxruntime",
    py: PythonModelOptions = PythonModelOptions(),
) -> list[str]:
    """The repository of one export (`mfssd-export --triton DIR --triton-backend KIND`); the model names.

    onnxruntime: every ONNX file (onnxruntime_onnx) and every engine (tensorrt_plan); tensorrt: the
    engines; python: every end2end ONNX file and engine, as a tensor and an image model each. CPU-only
    files (uint8 INT8) are left out of GPU instance groups, engines out of CPU ones, with a log line."""
    if kind not in REPOSITORY_KINDS:
        raise MfssdError(f"--triton-backend {kind!r}: choose one of {', '.join(REPOSITORY_KINDS)}")
    names: list[str] = []
    if kind == "tensorrt" and not engines:
        raise MfssdError("--triton-backend tensorrt serves TensorRT engines: add --trt (or use onnxruntime or python)")
    if kind != "tensorrt":
        for path in onnx_files:
            meta = artifact_meta(path)
            if kind == "python" and meta["layout"] != "end2end":
                log.info("%s not in the python repository: raw layouts need torch on the server (its end2end "
                         "export is served instead; mfssd-serve serves raw files)", path.name)  # fmt: skip
                continue
            if not onnx_kind(meta.get("precision", "fp32"), meta["layout"]).gpu and opts.kind == "gpu":
                log.info("%s not in the Triton repository: the uint8 INT8 model runs on CPUs only", path.name)
                continue
            if kind == "python":
                names += [d.name for d in add_python(repo, path, opts, py)]
            else:
                names.append(add_onnx(repo, path, opts).name)
    for engine in engines:
        if opts.kind != "gpu":
            log.warning("%s not added to the Triton repository: engines need --triton-device gpu", engine)
            continue
        if kind == "python":
            names += [d.name for d in add_python(repo, engine, opts, py)]
        else:
            names.append(add_engine(repo, engine, opts).name)
    return names
