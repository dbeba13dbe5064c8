"""One row of the bench JSON, typed: the documented contract (docs/architecture.md, "mfssd-bench --json").

A TypedDict rather than a dataclass: the row is the JSON object itself, so the report, the CSV, the plots
and every reader of results.json see the same keys, and typing it changes nothing they read."""

from __future__ import annotations

from typing import Any, TypedDict


class BenchRow(TypedDict, total=False):
    # what ran
    model: str  # file name
    group: str  # demo, demo-pruned, full, full-pruned, torchvision-import, peer, or a given file's stem
    format: str  # the artifact kind (artifacts.KINDS), "engine" for a given engine
    weights: str  # trained, random (speed only), as given
    device: str  # cpu | cuda
    backend: str
    providers: list[str] | None  # ONNX Runtime's providers in use
    runtime: str | None  # an ONNX file on the CPU: onnxruntime, openvino, openvino-bf16
    tile: str | None  # "N @OVERLAP" with --tile
    peer: str  # OpenVINO and torchvision peers
    of: str
    float_layers: str
    vs_torchvision: dict[str, Any]  # torchvision-import rows: agreement with torchvision's own model
    precision: str
    layout: str
    input_size: int | tuple[int, int] | list[int]  # a side, or (width, height); JSON: a list
    # how fast
    batch: int
    iters: int
    images_per_s: float
    latency_ms: dict[str, float]  # mean, p50, p90, p99 per batch
    stages_ms: dict[str, float] | None  # pre, infer, post medians; None for peers
    # how much
    params: int | None
    gflops: float | None
    size_mb: float | None
    achieved_gflops_per_s: float
    fraction_of_peak: float | None
    compute_fraction: float
    memory: dict[str, Any] | None
    memory_mb: float | None
    gpu_memory_mb: float | None
    # how well (--val, trained artifacts)
    map: float
    aps: float | None
    aitod: dict[str, float] | None
    val: dict[str, Any]
    # engines
    cuda_graphs: bool
    infer_includes: str
