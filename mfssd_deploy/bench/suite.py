"""What `mfssd-bench --fps` runs: the models, their artifacts, and one runner per configuration.

Model groups: `demo` and `demo-pruned` (the bundled trained models: accuracy is measured on them),
`full` and `full-pruned` (full-size 300x300 MFSSD-BN, random weights: speed only, the peer ratio
uses these), plus any .pt/.onnx/.engine path. Artifacts are exported once into a cache folder.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mfssd_deploy.artifacts import KINDS, ONNX_PRECISIONS, onnx_kind
from mfssd_deploy.bench import report
from mfssd_deploy.bench.engines import ENGINE_FORMATS, EngineTarget, build_group_engines
from mfssd_deploy.bench.harness import Runner
from mfssd_deploy.bench.rows import BenchRow
from mfssd_deploy.bench.torchvision_pair import GROUP as TV_GROUP
from mfssd_deploy.bench.torchvision_pair import PEER as TV_PEER
from mfssd_deploy.errors import MfssdError, installed
from mfssd_deploy.runtime.backends import CPU_RUNTIMES as BACKEND_CPU_RUNTIMES
from mfssd_deploy.runtime.backends import DEFAULT_FOR_SUFFIX, REGISTRY, RUNTIMES

log = logging.getLogger(__name__)

GROUPS = ("demo", "demo-pruned", "full", "full-pruned")
# Groups run only when named (--models): torchvision's ssd300_vgg16 and the import of its weights (torchvision_pair)
OPT_IN_GROUPS = (TV_GROUP,)
EXPORTED_GROUPS = (*GROUPS, *OPT_IN_GROUPS)  # checkpoints exported in this run (need calibration images, torch)
# the artifact kinds each group is benchmarked in (rows of the artifact table): eager, raw FP32 and the end2end
# file of every precision the table benches (int8u8: CPUs only)
BENCHED = tuple(p for p in ONNX_PRECISIONS.values() if p.bench)
FORMATS = {name: KINDS[name] for name in ("eager", "fp32-raw", *(f"{p.short}-e2e" for p in BENCHED))}
ALL_FORMATS = (*FORMATS, *ENGINE_FORMATS)  # the engine formats appear on a GPU with TensorRT
RANDOM = report.RANDOM_WEIGHTS
# Pruned full-size widths are rounded to a multiple of 8 channels: measured here, ONNX Runtime runs
# the same parameter ratio 15-25% faster than with the demo's odd widths (SIMD blocks; TensorRT's
# FP16/INT8 kernels want multiples of 8 too).
CHANNEL_MULTIPLE = 8


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mfssd-deploy" / "bench"


@dataclass
class Model:
    """One model to benchmark: its checkpoint (if any) and exported artifacts by format."""

    group: str
    files: dict[str, Path]
    weights: str  # "trained" | RANDOM


def synth_data(cache: Path, calib: int = 100, val: int = 200) -> Path:
    """The demo's fresh synthetic set (seed 1: never seen in training): calibration and validation."""
    from mfssd_deploy.data.synth import generate

    root = cache / f"synth-seed1-{calib}-{val}"
    if not (root / "annotations" / "val.json").is_file():
        log.info("generating %d calibration + %d validation synthetic images in %s", calib, val, root)
        generate(root, calib, val, seed=1, show_progress=False)
    return root


def _export(checkpoint: Path, cache: Path, name: str, calib_dir: Path,
            engines: EngineTarget | None = None) -> dict[str, Path]:  # fmt: skip
    """raw FP32, end2end FP32 and end2end INT8 (s8 and u8) ONNX of a checkpoint, exported once per content;
    on a GPU with TensorRT, also its engines (built once per GPU and TensorRT version)."""
    from mfssd_deploy.demo_assets import sample_images
    from mfssd_deploy.exporters.pipeline import ExportRequest, run_export
    from mfssd_deploy.fileio import sha256_file

    key = f"{name}-{sha256_file(checkpoint)[:10]}-{_recipe()}"
    files = {k: cache / f"{key}{kind.suffix}" for k, kind in FORMATS.items() if k != "eager"}
    if not all(p.is_file() for p in files.values()):
        log.info("exporting %s to %s (once; reused from the cache afterwards)", checkpoint.name, cache)
        every: dict[str, Any] = {p.field: True for p in BENCHED}
        run_export(ExportRequest(model=checkpoint, out_dir=cache, name=key, calib=calib_dir, calib_num=100,
                                 parity_images=sample_images(), time_runs=0,
                                 **every))  # fmt: skip
    if engines is not None:

        def export_fp16() -> Path:
            run_export(ExportRequest(model=checkpoint, out_dir=cache, name=key, layouts=("end2end",), fp16=True,
                                     parity_images=sample_images(), time_runs=0))  # fmt: skip
            return cache / f"{key}.fp16.end2end.onnx"

        onnx = {"fp32": files["fp32-e2e"], "int8": files["int8-e2e"]}
        files.update(build_group_engines(onnx, cache, key, engines, export_fp16))
    return {"eager": checkpoint, **files}


def _recipe() -> str:
    """What else decides an export's content: a new quantization recipe or release re-exports the cache."""
    import hashlib
    import json

    from mfssd_deploy import __version__
    from mfssd_deploy.exporters.quantize import EXCLUDE_OUTPUTS_S8, QUANT_OPS, QUANT_OPS_S8, QUANT_OPS_U8

    return hashlib.sha256(
        json.dumps([__version__, QUANT_OPS, QUANT_OPS_U8, QUANT_OPS_S8, EXCLUDE_OUTPUTS_S8]).encode()
    ).hexdigest()[:6]


def prepare(groups: Sequence[str], cache: Path, calib_dir: Path | None,
            engines: EngineTarget | None = None) -> list[Model]:  # fmt: skip
    """The models to benchmark; the groups' artifacts are exported (INT8 calibrated on `calib_dir`) once,
    and with `engines` (a GPU with TensorRT) built into TensorRT engines once.
    Files given by path need nothing else (the lean runtime benchmarks end2end ONNX files without torch)."""
    from mfssd_deploy.demo_assets import demo_model, pruned_demo_model

    models = []
    for g in groups:
        if g in EXPORTED_GROUPS and calib_dir is None:
            raise ValueError("the model groups need calibration images")
        calib = calib_dir or Path()
        if g in EXPORTED_GROUPS:
            cache.mkdir(parents=True, exist_ok=True)
        if g == "demo":
            models.append(Model(g, _export(demo_model(), cache, "demo", calib, engines), "trained"))
        elif g == "demo-pruned":
            models.append(Model(g, _export(pruned_demo_model(), cache, "demo-pruned", calib, engines), "trained"))
        elif g == TV_GROUP:
            from mfssd_deploy.bench.torchvision_pair import same_weights
            from mfssd_deploy.demo_assets import sample_images
            from mfssd_deploy.runtime.inputs import read_image

            _, ckpt = same_weights(cache, read_image(sample_images()[0]))
            models.append(Model(g, _export(ckpt, cache, g, calib, engines), RANDOM))
        elif g in ("full", "full-pruned"):
            from mfssd_deploy.bench.fullsize_models import fullsize_checkpoint, fullsize_config, pruned_config_like
            from mfssd_deploy.checkpoint import read_checkpoint
            from mfssd_deploy.config import ModelConfig

            if g == "full":
                cfg = fullsize_config()
            else:
                u, p = (
                    ModelConfig.from_dict(read_checkpoint(m)["config"]) for m in (demo_model(), pruned_demo_model())
                )
                cfg = pruned_config_like(u, p, multiple=CHANNEL_MULTIPLE)
            ckpt = fullsize_checkpoint(cache, g, cfg).checkpoint
            models.append(Model(g, _export(ckpt, cache, g, calib, engines), RANDOM))
        else:
            path = Path(g)
            if not path.is_file():
                raise MfssdError(f"--models {g}: not a group ({', '.join(EXPORTED_GROUPS)}) and not a file")
            models.append(Model(path.stem, {_format_of(path): path}, "as given"))
    return models


def _format_of(path: Path) -> str:
    from mfssd_deploy.artifacts import kind_of, read_meta

    kind = kind_of(path)
    if kind in ("engine", "checkpoint"):
        return "engine" if kind == "engine" else "eager"
    if kind != "onnx":
        raise MfssdError(f"{path}: benchmark a .pt, .onnx or .engine file")
    meta = read_meta(path)  # off the file: no inference session just to read a string
    return onnx_kind(meta.get("precision", "fp32"), meta["layout"]).name


Spec = dict[str, Any]  # plain JSON: a configuration can be rebuilt in another process (memory is measured there)


# The CPU runtimes an ONNX artifact is benchmarked in (--runtimes): our Detector on each backend that takes
# .onnx on a CPU, with OpenVINO also at its bf16 hint for FP32 files; from the backend registry.
CPU_RUNTIMES = BACKEND_CPU_RUNTIMES


def installed_cpu_runtimes() -> tuple[str, ...]:
    return tuple(r.name for e in REGISTRY.values() if e.module_needed is None or installed(e.module_needed)
                 for r in e.cpu_runtimes)  # fmt: skip


def default_cpu_runtimes() -> tuple[str, ...]:
    """The default --runtimes: every installed one, or only the runtimes of the backend that
    MFSSD_ONNX_CPU_BACKEND pins (the variable that pins the Detector's CPU runtime pins the benchmark's too)."""
    from mfssd_deploy.runtime.backends import ONNX_CPU_ENV, pinned_cpu_backend

    have, pinned = installed_cpu_runtimes(), pinned_cpu_backend()
    if not pinned:
        return have
    mine = [r.name for r in REGISTRY[pinned].cpu_runtimes]
    if not set(mine) & set(have):
        raise MfssdError(f"{ONNX_CPU_ENV}={pinned} but {REGISTRY[pinned].title} is not installed: "
                         f'pip install "mfssd-deploy[{REGISTRY[pinned].extra}]"')  # fmt: skip
    return tuple(r for r in have if r in mine)


def detector_spec(path: Path, group: str, fmt: str, weights: str, device: str, batch: int, threads: int = 0,
                  cuda_graphs: bool = False, runtime: str | None = None) -> Spec:  # fmt: skip
    """`runtime`: one of CPU_RUNTIMES for an ONNX file on the CPU, None for the Detector's own choice."""
    return {"kind": "detector", "path": str(path), "group": group, "format": fmt, "weights": weights,
            "device": device, "batch": batch, "threads": threads, "cuda_graphs": cuda_graphs,
            "runtime": runtime}  # fmt: skip


def openvino_peer_specs(models: Sequence[Model], calib_dir: Path | None, cache: Path, threads: int = 0) -> list[Spec]:
    """The OpenVINO peers (bench.openvino_peers) on the CPU: OpenVINO's defaults on each full-size pruned INT8
    file (the candidates for our best row), and OpenVINO + NNCF on the unpruned full-size FP32 model."""
    specs: list[Spec] = []
    by_group = {m.group: m for m in models}
    pruned = by_group.get("full-pruned")
    for fmt in ("int8-e2e", "int8u8-e2e"):
        if pruned is not None and fmt in pruned.files:
            specs.append({"kind": "peer", "peer": "openvino", "path": str(pruned.files[fmt]),
                          "of": f"full-pruned {fmt}", "device": "cpu", "threads": threads})  # fmt: skip
    full = by_group.get("full")
    if full is not None and "fp32-e2e" in full.files and calib_dir is not None:
        if not installed("nncf"):
            log.info('no OpenVINO + NNCF peer: nncf is not installed (pip install "mfssd-deploy[bench]")')
            return specs
        from mfssd_deploy.bench.openvino_peers import file_meta, nncf_quantized
        from mfssd_deploy.config import ModelConfig

        source = full.files["fp32-e2e"]
        cfg = ModelConfig.from_dict(file_meta(source)["config"])
        ir = nncf_quantized(source, calib_dir, cache, cfg)  # once, before any timing
        specs.append({"kind": "peer", "peer": "nncf", "path": str(ir), "source": str(source), "of": "full fp32-e2e",
                      "device": "cpu", "threads": threads})  # fmt: skip
    return specs


def peer_specs(full_checkpoint: Path, devices: Sequence[str] = ("cpu",)) -> list[Spec]:
    """torchvision ssd300_vgg16 and eager MFSSD-BN + the reference greedy NMS loop (full size), on each
    device: a GPU artifact is compared with the peers on the same GPU, never with the CPU's."""
    return [spec for dev in devices for spec in (
        {"kind": "peer", "peer": "torchvision", "device": dev},
        {"kind": "peer", "peer": "reference", "checkpoint": str(full_checkpoint), "device": dev},
    )]  # fmt: skip


def same_weights_peer_specs(models: Sequence[Model], cache: Path, devices: Sequence[str] = ("cpu",)) -> list[Spec]:
    """torchvision's ssd300_vgg16 on the weights the `torchvision` group imported, on each device."""
    if not any(m.group == TV_GROUP for m in models):
        return []
    from mfssd_deploy.bench.torchvision_pair import PEER, SEED

    state = cache / f"torchvision-ssd300-seed{SEED}.pth"
    return [{"kind": "peer", "peer": PEER, "state": str(state), "device": dev} for dev in devices]


def build_runner(spec: Spec, with_facts: bool = True) -> Runner:
    """The runner a spec describes; `with_facts` also measures parameters and GFLOPs (builds the torch model)."""
    if spec["kind"] == "detector":
        return _detector_runner(spec, with_facts)
    if spec["peer"] in ("torchvision", TV_PEER):
        return _torchvision_peer(with_facts, spec.get("device", "cpu"), spec.get("state"))
    if spec["peer"] in ("openvino", "nncf"):
        return _openvino_peer(spec, with_facts)
    return _reference_peer(Path(spec["checkpoint"]), with_facts, spec.get("device", "cpu"))


def _detector_runner(spec: Spec, with_facts: bool) -> Runner:
    from mfssd_deploy.runtime.detector import Detector

    path = Path(spec["path"])
    opts: dict[str, Any] = {}
    runtime = spec.get("runtime")
    backend: str | None = None
    if runtime is not None:
        backend, rt = RUNTIMES[runtime]
    elif path.suffix == ".onnx":  # a GPU row: the .onnx default backend, with the bench's options for it
        backend = DEFAULT_FOR_SUFFIX[".onnx"]
        rt = REGISTRY[backend].cpu_runtimes[0]
    if backend is not None:
        opts.update(rt.options)
        if spec.get("threads"):
            opts[rt.threads_option] = spec["threads"]
    if path.suffix == ".engine":
        opts["cuda_graphs"] = bool(spec.get("cuda_graphs"))
    tiling = {"tile": spec["tile"], "overlap": spec.get("overlap")} if spec.get("tile") else {}
    det = Detector(path, device=spec["device"], batch_size=spec["batch"], backend=backend, **tiling, **opts)
    precision = det.backend.meta.get("precision", "fp32")
    hint = RUNTIMES[runtime][1].hint if runtime else None  # an FP32 file run at OpenVINO's bf16 hint is a bf16 row
    facts: BenchRow = {
        "model": path.name, "group": spec["group"], "format": spec["format"], "weights": spec["weights"],
        "device": spec["device"], "backend": det.backend.name, "providers": getattr(det.backend, "providers", None),
        "runtime": runtime, "precision": hint if hint and precision == "fp32" else precision,
        "layout": det.layout,
        "input_size": det.config.input_size, "size_mb": path.stat().st_size / 2**20,
        "tile": None if det.tiling is None else f"{det.tiling.tile[0]} @{det.tiling.overlap:g}",
        "compute_fraction": report.compute_fraction(det.config),  # torch-free: the pre + post target's rule
    }  # fmt: skip
    if path.suffix == ".engine":  # what the infer stage includes, as docs/benchmarking.md states to state
        facts["cuda_graphs"] = bool(getattr(det.backend, "cuda_graphs", False))  # an end2end engine runs eagerly
        facts["infer_includes"] = "H2D copy + compute + D2H copy (pinned host memory)"
    if with_facts:
        facts["params"], facts["gflops"] = _facts_or_none(det.config)
        if det.tiling is not None:  # a tiled call runs a varying number of crops per frame: no per-image figure
            facts["gflops"] = None

    def run(images: list[Any]) -> dict[str, float]:
        det.detect_arrays(images)
        return det.last_timing

    return Runner(facts, run, detector=det)


def _facts_or_none(cfg: Any) -> tuple[int | None, float | None]:
    """Parameters and GFLOPs are measured on the torch model: without torch (lean runtime) they are blank."""
    try:
        from mfssd_deploy.bench.model_size import model_facts

        return model_facts(cfg)
    except ImportError:
        return None, None


def _openvino_peer(spec: Spec, with_facts: bool) -> Runner:
    from mfssd_deploy.bench.openvino_peers import OpenVinoPeer, file_meta
    from mfssd_deploy.config import ModelConfig

    path = Path(spec["path"])
    meta = file_meta(Path(spec.get("source", path)))  # the ONNX file's metadata: pre-processing, size
    cfg = ModelConfig.from_dict(meta["config"])
    peer = OpenVinoPeer(path, cfg, spec.get("threads", 0))
    if spec["peer"] == "nncf":
        name, precision = f"OpenVINO + NNCF INT8 ({spec['of']})", "int8-nncf"
    else:
        name, precision = f"OpenVINO defaults ({spec['of']})", str(meta.get("precision", "fp32"))
    facts: BenchRow = {"model": name, "group": "peer", "peer": spec["peer"], "format": "openvino",
                             "weights": RANDOM, "device": "cpu", "backend": "openvino",
                             "precision": precision, "layout": "end2end",
                             "input_size": cfg.input_size, "size_mb": _model_mb(path), "of": spec["of"],
                             "float_layers": peer.inference_precision}  # fmt: skip
    if with_facts:
        facts["params"], facts["gflops"] = _facts_or_none(cfg)
    return Runner(facts, lambda imgs: (peer(imgs), None)[1])


def _model_mb(path: Path) -> float:
    """A model file's size; an OpenVINO IR is its .xml and its .bin (the weights)."""
    files = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
    return sum(f.stat().st_size for f in files if f.is_file()) / 2**20


def _torchvision_peer(with_facts: bool, device: str = "cpu", state: str | None = None) -> Runner:
    """torchvision's ssd300_vgg16: random weights, or (`state`) the torchvision-import group's weights."""
    from mfssd_deploy.bench.peers import TorchvisionSSDPeer

    peer = TorchvisionSSDPeer(num_classes=21, device=device, state=state)
    facts: BenchRow = {"model": "torchvision ssd300_vgg16", "group": "peer", "format": "eager", "weights": RANDOM,
                             "device": device, "backend": "torch", "precision": "fp32", "layout": "end2end",
                             "input_size": 300, "size_mb": None}  # fmt: skip
    if state is not None:
        facts.update({"model": "torchvision ssd300_vgg16 (same weights)", "peer": TV_PEER,
                      "size_mb": Path(state).stat().st_size / 2**20})  # fmt: skip
    if with_facts:
        from torchvision.models.detection import ssd300_vgg16

        from mfssd_deploy.complexity import count_params

        facts["params"], facts["gflops"] = count_params(peer.model), _torchvision_gflops(ssd300_vgg16)
    return Runner(facts, lambda imgs: (peer(imgs), None)[1], extra={"call": peer})


def _reference_peer(checkpoint: Path, with_facts: bool, device: str = "cpu") -> Runner:
    from mfssd_deploy.bench.peers import EagerReferencePeer
    from mfssd_deploy.checkpoint import load_model

    peer = EagerReferencePeer(load_model(checkpoint), device=device)
    facts: BenchRow = {"model": "MFSSD-BN eager + reference NMS loop", "group": "peer", "format": "eager",
                             "weights": RANDOM, "device": device, "backend": "torch", "precision": "fp32",
                             "layout": "raw", "input_size": 300,
                             "size_mb": checkpoint.stat().st_size / 2**20}  # fmt: skip
    if with_facts:
        from mfssd_deploy.bench.model_size import model_facts

        facts["params"], facts["gflops"] = model_facts(peer.cfg)
    return Runner(facts, lambda imgs: (peer(imgs), None)[1])


def _torchvision_gflops(factory: Callable[..., Any]) -> float:
    """2 x multiply-adds of torchvision's SSD300 network (backbone + heads) on one 300x300 image."""
    import torch

    from mfssd_deploy.complexity import conv_macs

    model = factory(weights=None, weights_backbone=None, num_classes=21).eval()
    x = torch.zeros(1, 3, 300, 300)

    def net(t: torch.Tensor) -> Any:
        feats = list(model.backbone(t).values())
        return model.head(feats)

    return 2 * conv_macs(net, model, x) / 1e9
