"""One benchmark run, as a library call: `run_bench(BenchRequest(fps=True, ...))` is `mfssd-bench --fps ...`.

The command only parses its arguments into a BenchRequest, calls run_bench and prints or writes what comes
back (format_text, write_outputs), so a script, a notebook or the demo runs the same benchmark without
building another command's argv. Nothing here imports torch at module level: the lean runtime
benchmarks end2end ONNX files without it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mfssd_deploy.artifacts import ENGINE_KINDS, KINDS
from mfssd_deploy.bench.report import Targets
from mfssd_deploy.bench.rows import BenchRow
from mfssd_deploy.bench.suite import ALL_FORMATS, EXPORTED_GROUPS, GROUPS
from mfssd_deploy.errors import MfssdError

if TYPE_CHECKING:
    from mfssd_deploy.bench.engines import EngineTarget
    from mfssd_deploy.bench.harness import Runner
    from mfssd_deploy.bench.suite import Model, Spec

log = logging.getLogger("mfssd_deploy")
SoakRow = Callable[[dict[str, Any]], None]
Row = BenchRow
SOAK_HEADER = (
    "| configuration | batch | calls | seconds | RSS start MB | RSS end MB | growth MB | second-half growth MB |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|"
)


@dataclass(frozen=True)
class BenchRequest:
    """Every setting of a run, with mfssd-bench's defaults (its --help says what each does).

    Where the results go (--json, --csv, --markdown, --plot) is not part of the run: write_outputs.
    """

    fps: bool = False  # the speed table
    soak: int | None = None  # N calls per configuration and batch size, and the memory growth
    models: tuple[str, ...] | None = None  # groups (suite.GROUPS) and/or files; None: the four groups (soak: demo)
    formats: tuple[str, ...] = ALL_FORMATS  # artifact kinds per group
    batch_sizes: tuple[int, ...] = (1, 8)
    iters: int | None = None  # timed calls per configuration and batch; None: `seconds` of timed work
    seconds: float = 2.0
    warmup: int = 2
    peers: bool = True
    val: str | None = None  # accuracy: "synth" (the demo's fresh synthetic set) or a dataset folder
    val_images: int = 200
    val_format: str | None = None  # the --val folder's layout (data.sources.LAYOUTS); None: found from it
    val_classes: str | None = None  # a VOC --val folder's class list
    images: str | None = None  # folder of timing images; None: the bundled samples
    device: str = "auto"  # auto | cpu | cuda
    memory: bool = True  # each configuration's peak memory, alone in a fresh process
    engines: bool = True  # on a GPU with TensorRT: build the groups' engines
    cuda_graphs: bool = False
    threads: int = 0  # CPU threads for ONNX Runtime and torch (0: all cores)
    cache: Path | None = None  # None: suite.default_cache()
    runtimes: tuple[str, ...] | None = None  # CPU runtimes of the ONNX rows (suite.CPU_RUNTIMES); None: installed
    tile: int | None = None  # tiled inference in every row of ours (tile side in pixels); None: whole images
    overlap: float | None = None  # with `tile`: the tiles' overlap (None: the Detector's default, 0.2)
    workspace_gb: float = 2.0  # TensorRT builder workspace of the groups' engines
    timing_cache: Path | None = None  # None: one per GPU, TensorRT version and profile in `cache`
    targets: Targets = field(default_factory=Targets)  # what the PASS/FAIL lines judge against


def validate(req: BenchRequest) -> None:
    """One line for a request that cannot run, before any work."""
    if not req.fps and req.soak is None:
        raise MfssdError("choose what to run: --fps (speed table) or --soak N (memory growth over N calls)")
    if req.soak is not None and req.soak < 1:
        raise MfssdError(f"--soak {req.soak}: give a number of calls >= 1")
    unknown = set(req.formats) - set(ALL_FORMATS)
    if unknown:
        raise MfssdError(f"--formats: unknown {sorted(unknown)}; choose from {', '.join(ALL_FORMATS)}")
    _runtimes(req.runtimes)
    if req.overlap is not None and req.tile is None:
        raise MfssdError("--overlap sets up tiled inference: add --tile N (e.g. --tile 300)")
    if req.tile is not None:
        from mfssd_deploy.geometry.tiling import DEFAULT_OVERLAP, Tiling

        Tiling((req.tile, req.tile), DEFAULT_OVERLAP if req.overlap is None else req.overlap)  # one-line errors


def _runtimes(asked: Sequence[str] | None) -> tuple[str, ...]:
    """The CPU runtimes of this run: those asked (each must exist and be installed), or all installed."""
    from mfssd_deploy.bench.suite import CPU_RUNTIMES, default_cpu_runtimes, installed_cpu_runtimes
    from mfssd_deploy.runtime.backends import REGISTRY, RUNTIMES

    if asked is None:
        return default_cpu_runtimes()
    have = installed_cpu_runtimes()
    unknown = set(asked) - set(CPU_RUNTIMES)
    if unknown:
        raise MfssdError(f"--runtimes: unknown {sorted(unknown)}; choose from {', '.join(CPU_RUNTIMES)}")
    missing = [r for r in asked if r not in have]
    if missing:
        entry = REGISTRY[RUNTIMES[missing[0]][0]]
        raise MfssdError(
            f'--runtimes {",".join(missing)}: {entry.title} is not installed: pip install "mfssd-deploy[{entry.extra}]"'
        )
    if not asked:
        raise MfssdError("--runtimes: name at least one of " + ", ".join(CPU_RUNTIMES))
    return tuple(asked)


@dataclass
class _Plan:
    """What the timing needs: the configurations (specs, each one's peak memory) and the images."""

    specs: list[Spec]
    memory: list[dict[str, Any] | None]
    images: list[Any]
    devices: list[str]
    val_source: Any


def run_bench(req: BenchRequest, on_soak_row: SoakRow | None = None) -> dict[str, Any]:
    """The run: the bench JSON (docs/architecture.md) for --fps, {"soak": [...]} for --soak.

    `on_soak_row` receives each soak row as soon as it is measured (a soak runs minutes).
    """
    validate(req)
    torch = _torch()
    if req.threads and torch is not None:
        torch.set_num_threads(req.threads)
    t_start = time.time()
    plan = _plan(req)
    if req.soak is not None:
        return {"soak": _soak(_load(plan, range(len(plan.specs)), req.batch_sizes), plan.images, req.batch_sizes,
                              req.soak, on_soak_row)}  # fmt: skip
    env = _environment(req, plan.devices, torch)
    timed = _timed_sets(plan, req, env)
    from mfssd_deploy.bench import report
    from mfssd_deploy.bench.harness import peak_rss_mb

    env["peak_rss_mb"] = peak_rss_mb()

    targets, ratios = report.targets(timed.for_targets, req.batch_sizes, req.targets)
    return {"env": env, "rows": timed.rows, "targets": [t.__dict__ for t in targets], "ratios": ratios,
            "speed_ratios": timed.speed_ratios, "same_weights": timed.same_weights,
            "settings": {"batches": list(req.batch_sizes), "iters": req.iters, "seconds": req.seconds,
                         "warmup": req.warmup, "timing_images": len(plan.images), "val": req.val,
                         "runtimes": list(_runtimes(req.runtimes)), "tile": req.tile, "overlap": req.overlap},
            "seconds": time.time() - t_start}  # fmt: skip


def _plan(req: BenchRequest) -> _Plan:
    """Models exported (once, cached), one spec per artifact, device and peer, and each one's peak memory,
    measured alone in a fresh process."""
    from mfssd_deploy.bench import suite

    groups = list(req.models or (GROUPS if req.fps else ("demo",)))
    _require_group_extras([g for g in groups if g in EXPORTED_GROUPS], bool(req.models))
    devices = _devices(req.device)
    cache = req.cache or suite.default_cache()
    image_paths, images = _timing_images(req.images, cache if req.tile is not None else None)
    # the synthetic set calibrates the groups' INT8 exports and is the default validation set
    need_data = req.val == "synth" or any(g in EXPORTED_GROUPS for g in groups)
    data = suite.synth_data(cache, calib=100, val=req.val_images) if need_data else None
    val_source = _val_source(req, data)  # before the long work: a wrong --val DIR fails now
    engines = engine_target(devices, req) if any(g in EXPORTED_GROUPS for g in groups) else None
    models = suite.prepare(groups, cache, data / "train" if data else None, engines)
    runtimes = _runtimes(req.runtimes)
    specs = artifact_specs(models, req.formats, devices, max(req.batch_sizes), req.threads, req.cuda_graphs, runtimes)
    for spec in specs:
        spec.update(tile=req.tile, overlap=req.overlap)
    full = next((m for m in models if m.group == "full"), None)
    if req.tile is not None and req.peers:
        log.info("--tile: the peers are left out (they resize whole frames; the tiling benchmark against SAHI is "
                 "benchmarks/tiling)")  # fmt: skip
    elif req.fps and req.peers and full is not None:
        specs += suite.peer_specs(full.files["eager"], devices)
    if req.peers and req.tile is None:
        specs += suite.same_weights_peer_specs(models, cache, devices)
    if req.fps and req.peers and req.tile is None and "cpu" in devices and "openvino" in runtimes:
        specs += suite.openvino_peer_specs(models, data / "train" if data else None, cache, req.threads)
    if not specs:
        raise MfssdError("nothing to benchmark: check --models and --formats")
    memory: list[dict[str, Any] | None] = [None] * len(specs)
    if req.fps and req.memory:
        from mfssd_deploy.bench.memory import peak_memory

        log.info("peak memory of each configuration, alone in a fresh process (--no-memory skips)")
        memory = [peak_memory(s, image_paths, req.batch_sizes) for s in specs]
    return _Plan(specs, memory, images, devices, val_source)


def _load(plan: _Plan, indices: Sequence[int], batches: Sequence[int]) -> list[Runner]:
    """The configurations at `indices`, each loaded and warmed up at every batch size in `batches`."""
    from mfssd_deploy.bench import harness, suite

    runners = []
    for i in indices:
        r = harness.load_and_warm(partial(suite.build_runner, plan.specs[i]), plan.images, batches)
        r.facts["memory"] = plan.memory[i]
        runners.append(r)
    return runners


def _release(runners: list[Runner]) -> None:
    """Drop a set's sessions and hand the freed memory back to the system (glibc keeps it otherwise)."""
    import contextlib
    import ctypes
    import gc

    runners.clear()
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: the allocator keeps what it keeps
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@dataclass
class _Timed:
    rows: list[Row]  # the table: each configuration's first timing, then the peers
    for_targets: list[Row]  # the table with each batch's best full-size row timed beside the peers
    speed_ratios: list[dict[str, Any]]  # each from the set that holds both of its rows
    same_weights: list[dict[str, Any]]  # the torchvision-import rows with their peer's timing of the same set


def _timed_sets(plan: _Plan, req: BenchRequest, env: dict[str, Any]) -> _Timed:
    """Set by set (bench.sets): load, hold the torchvision import to its peer, measure accuracy once per
    configuration, time every batch size interleaved round by round, release. Then the target peers
    beside the best full-size row of each batch (_peer_set)."""
    from mfssd_deploy.bench import report
    from mfssd_deploy.bench.harness import peak_rss_mb, rss_mb
    from mfssd_deploy.bench.sets import is_target_peer, timing_sets
    from mfssd_deploy.bench.torchvision_pair import hold_to_peer

    sets = timing_sets(plan.specs)
    first: dict[int, list[Row]] = {}  # spec index -> its rows (one per batch) of its first set
    ratios: list[dict[str, Any]] = []
    pairs: list[dict[str, Any]] = []
    for n, idx in enumerate(sets, 1):
        log.info("set %d/%d: %d configurations, loaded together and timed interleaved", n, len(sets), len(idx))
        runners = _load(plan, idx, req.batch_sizes)
        hold_to_peer(runners, plan.images)  # the import against torchvision on the same weights, before timing
        _accuracy([r for i, r in zip(idx, runners, strict=True) if i not in first], plan.val_source, req.val_images,
                  str(req.val))  # once per configuration; no reference to a runner outlives its set  # fmt: skip
        rows = _time(runners, plan.images, req, env)  # batch-major: runner k's rows are rows[k::len(idx)]
        for k, i in enumerate(idx):
            first.setdefault(i, rows[k :: len(idx)])
        seen = {_ratio_key(r) for r in ratios}  # a ratio two sets can both give is taken from the first
        ratios += [r for r in report.speed_ratios(rows) if _ratio_key(r) not in seen]
        pairs += same_weights_rows(rows)
        log.info("set %d/%d timed: resident %.0f MB, peak so far %.0f MB", n, len(sets), rss_mb(), peak_rss_mb())
        _release(runners)
    table = [row for i in sorted(first) for row in first[i]]
    peers = [i for i, s in enumerate(plan.specs) if is_target_peer(s)]
    for_targets = list(table)
    if peers:
        peer_rows, best_rows = _peer_set(plan, peers, first, table, req, env)
        table += peer_rows
        for_targets = [r for r in table if not any(r is old for old, _ in best_rows)]
        for_targets += [new for _, new in best_rows]
    return _Timed(_ordered(table, req.batch_sizes), for_targets, ratios, pairs)


def _ratio_key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["kind"], r["batch"], r["device"], r["of"], r["vs"])


def _time(runners: list[Runner], images: list[Any], req: BenchRequest, env: dict[str, Any],
          batches: Sequence[int] | None = None) -> list[Row]:  # fmt: skip
    """Rows of `runners` per batch size (batch-major: every runner at the first batch, then the next), every
    configuration's calls interleaved round by round."""
    from mfssd_deploy.bench import harness

    rows: list[Row] = []
    for b in batches or req.batch_sizes:
        chunk = harness.batch_of(images, b)
        timed = harness.interleaved(runners, chunk, warmup=req.warmup, iters=req.iters, seconds=req.seconds)
        for r, (times, stages) in zip(runners, timed, strict=True):
            rows.append(harness.make_row(r, b, times, stages, peak_for(r.facts, env)))
    return rows


def _peer_set(plan: _Plan, peers: list[int], first: dict[int, list[Row]], table: list[Row], req: BenchRequest,
              env: dict[str, Any]) -> tuple[list[Row], list[tuple[Row, Row]]]:  # fmt: skip
    """Per device and batch: the target peers loaded beside the best full-size row of the table (within the
    accuracy budgets) and timed interleaved with it. Returns the peers' rows and (table row, re-timed row)
    of each best."""
    from mfssd_deploy.bench import report
    from mfssd_deploy.bench.harness import peak_rss_mb, rss_mb

    _, ok = report.accuracy_budgets(table, req.targets)
    peer_rows: list[Row] = []
    best_rows: list[tuple[Row, Row]] = []
    for dev in plan.devices:
        on_dev = [i for i in peers if plan.specs[i].get("device", "cpu") == dev]
        for b in req.batch_sizes if on_dev else ():
            best, _ = report.best_full(table, b, ok, dev)
            spec_i = next((i for i, rows in first.items() if best is not None and any(r is best for r in rows)), None)
            idx = on_dev + ([spec_i] if spec_i is not None else [])
            on = "" if dev == "cpu" else f" on {dev}"
            log.info("batch %d%s: the peers beside the best full-size row (%s)", b, on,
                     report.label(best) if best else "none")  # fmt: skip
            runners = _load(plan, idx, [b])
            rows = _time(runners, plan.images, req, env, [b])
            log.info("peers timed: resident %.0f MB, peak so far %.0f MB", rss_mb(), peak_rss_mb())
            peer_rows += rows[: len(on_dev)]
            if best is not None:  # its accuracy was measured in its set: the re-timed row carries it
                kept = {k: best[k] for k in ("map", "aps", "aitod", "val") if k in best}
                best_rows.append((best, {**rows[-1], **kept}))  # type: ignore[typeddict-item]
            _release(runners)
    return peer_rows, best_rows


def _ordered(rows: list[Row], batches: Sequence[int]) -> list[Row]:
    """Batch-major, as the table reads (each batch's configurations in spec order)."""
    return [r for b in batches for r in rows if r["batch"] == b]


def _environment(req: BenchRequest, devices: list[str], torch: Any) -> dict[str, Any]:
    """The machine, its libraries and its FP32 peaks, measured in the same run as the rows read against them."""
    from mfssd_deploy.bench.stats import environment, fp32_peaks, gpu_fp32_peak, int8_peaks

    env = environment()
    env["threads"] = req.threads or (torch.get_num_threads() if torch is not None else os.cpu_count())
    log.info("measuring the FP32 and INT8 peaks (2048^3 matmuls)")
    env["fp32_matmul_gflops"] = fp32_peaks()
    env["peak_fp32_gflops"] = max(env["fp32_matmul_gflops"].values())
    env["int8_matmul_gops"] = int8_peaks()
    env["peak_int8_gops"] = max(env["int8_matmul_gops"].values(), default=None)
    if "cuda" in devices:
        log.info("measuring the GPU's FP32 peak (4096^3 matmul, TF32 off)")
        env["peak_fp32_gflops_gpu"] = gpu_fp32_peak()
    return env


def _soak(runners: list[Runner], images: list[Any], batches: Sequence[int], calls: int,
          on_row: SoakRow | None) -> list[dict[str, Any]]:  # fmt: skip
    from mfssd_deploy.bench import harness, report

    out = []
    for r in runners:
        for b in batches:  # every batch size: an allocator that grows per input shape shows here
            s = harness.soak(r, harness.batch_of(images, b), calls)
            s.update({"configuration": report.label({**r.facts, "batch": b}), "batch": b})
            out.append(s)
            if on_row is not None:
                on_row(s)
    return out


def soak_line(s: dict[str, Any]) -> str:
    """One soak row of the Markdown table under SOAK_HEADER."""
    return (f"| {s['configuration']} | {s['batch']} | {s['iterations']} | {s['seconds']:.1f} | {s['rss_start_mb']:.0f} "
            f"| {s['rss_end_mb']:.0f} | {s['growth_mb']:+.1f} | {s['growth_second_half_mb']:+.1f} |")  # fmt: skip


def _torch() -> Any:
    """torch when installed: the lean runtime benchmarks end2end ONNX files without it."""
    try:
        import torch

        return torch
    except ImportError:
        return None


def _devices(choice: str) -> list[str]:
    if choice == "cpu":
        return ["cpu"]
    torch = _torch()
    gpu = torch is not None and torch.cuda.is_available()
    if not gpu:  # no torch, or PyPI's aarch64 torch (no CUDA): a Jetson's engines run on NVIDIA's CUDA bindings
        import onnxruntime as ort

        gpu = bool({"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers()))
        gpu = gpu or _cuda_bindings_see_a_gpu()
    if choice == "cuda" and not gpu:
        raise MfssdError("--device cuda but no CUDA GPU is visible (to torch, ONNX Runtime or NVIDIA's CUDA "
                         "bindings); use --device cpu")  # fmt: skip
    if choice == "cuda":
        return ["cuda"]
    return ["cpu", "cuda"] if gpu else ["cpu"]


def _cuda_bindings_see_a_gpu() -> bool:
    from mfssd_deploy.runtime.backends.tensorrt_cuda import device_info

    try:
        device_info(0)
    except (MfssdError, ImportError):  # MissingExtraError is an MfssdError: no bindings installed
        return False
    return True


def engine_target(devices: list[str], req: BenchRequest) -> EngineTarget | None:
    """What to build the groups' TensorRT engines for, or None (no GPU, no TensorRT, or not asked)."""
    from mfssd_deploy.bench.engines import ENGINE_FORMATS, EngineTarget
    from mfssd_deploy.errors import MissingExtraError
    from mfssd_deploy.exporters.tensorrt_build import gpu_info
    from mfssd_deploy.runtime.engine_meta import import_tensorrt

    formats = tuple(f for f in req.formats if f in ENGINE_FORMATS)
    if "cuda" not in devices or not formats or not req.engines:
        return None
    try:
        version = str(import_tensorrt().__version__)
        gpu = gpu_info()  # through torch: a lean install (ONNX Runtime GPU only) gets no engine rows
    except MissingExtraError as exc:
        log.info("no TensorRT engine rows: %s", exc)
        return None
    lo, hi = min(req.batch_sizes), max(req.batch_sizes)
    return EngineTarget(gpu, version, (lo, hi, hi), formats, req.workspace_gb, req.timing_cache)


LARGE_TIMING_FRAMES = 4  # --tile without --images: this many large synthetic frames (data.synth.generate_large)


def _timing_images(folder: str | None, large_cache: Path | None = None) -> tuple[list[Path], list[Any]]:
    """--images DIR, else the bundled samples; for a tiled run (large_cache given) large synthetic frames
    (1920x1080 and 1280x720, generated once into the cache): tiling a 300-pixel sample would time nothing."""
    from mfssd_deploy.demo_assets import sample_images
    from mfssd_deploy.runtime.inputs import image_files, load_images

    if folder is None and large_cache is not None:
        from mfssd_deploy.data.synth import generate_large

        root = large_cache / f"large-seed1-{LARGE_TIMING_FRAMES}"
        if not (root / "annotations" / "val.json").is_file():
            generate_large(root, LARGE_TIMING_FRAMES, seed=1, show_progress=False)
        folder = str(root / "val")
    files = image_files(Path(folder)) if folder else sample_images()
    if not files:
        raise MfssdError(f"--images {folder}: no images found (jpg, png, bmp, ...)")
    files = files[:16]
    arrays, _ = load_images([str(f) for f in files])
    return files, arrays


def artifact_specs(models: list[Model], formats: Sequence[str], devices: list[str], batch: int, threads: int,
                   cuda_graphs: bool, runtimes: Sequence[str] = ("onnxruntime",)) -> list[Spec]:  # fmt: skip
    """One configuration per artifact and device it runs on (a model's files in `formats`; files given by
    path always), and on the CPU one per runtime for each ONNX file (the bf16 hint for FP32 files only)."""
    from mfssd_deploy.bench.suite import detector_spec
    from mfssd_deploy.runtime.backends import RUNTIMES

    out = []
    for m in models:
        for fmt, path in m.files.items():
            if m.weights != "as given" and fmt not in formats:
                continue
            for dev in devices:
                gpu_only = fmt == "engine" or fmt in ENGINE_KINDS
                cpu_only = fmt == "fp32-raw" or (fmt in KINDS and not KINDS[fmt].gpu)
                if (gpu_only and dev != "cuda") or (cpu_only and dev == "cuda"):
                    continue  # u8 INT8 runs on CPUs only; on a GPU the raw graph is not the deployment path
                onnx_cpu = dev == "cpu" and Path(path).suffix == ".onnx"
                for rt in (
                    (r for r in runtimes if fmt.startswith("fp32") or not RUNTIMES[r][1].hint) if onnx_cpu else [None]
                ):
                    out.append(detector_spec(path, m.group, fmt, m.weights, dev, batch, threads, cuda_graphs, rt))
    return out


def _require_group_extras(groups: list[str], named: bool) -> None:
    """The groups are checkpoints exported in this run (torch, onnx): without them, fail before the
    synthetic data is generated, and say what runs in a lean install."""
    import importlib

    from mfssd_deploy.errors import MissingExtraError

    if not groups:
        return
    for module in ("torch", "torchvision", "onnx", "onnxslim"):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            which = (f"--models {','.join(groups)}: model groups are" if named
                     else f"the default model groups ({', '.join(groups)}) are")  # fmt: skip
            raise MissingExtraError(
                f"{which} exported from checkpoints in this run, which needs {module} (not installed): "
                'pip install "mfssd-deploy[export]"; or benchmark end2end ONNX files: --models FILE.onnx,...'
            ) from exc


def _val_source(req: BenchRequest, data: Path | None) -> Any:
    if req.val is None:
        return None
    from mfssd_deploy.data.sources import open_dataset

    if req.val == "synth" and data:
        return open_dataset(data, "val")
    return open_dataset(req.val, "val", req.val_classes, req.val_format)


def _accuracy(runners: list[Any], source: Any, max_images: int, label: str) -> None:
    if source is None:
        return
    from mfssd_deploy.bench.suite import RANDOM
    from mfssd_deploy.evaluation.coco import AITOD_BUCKETS, coco_available
    from mfssd_deploy.evaluation.runner import detector_predictor, evaluate

    coco = coco_available()  # APs needs pycocotools; mAP@0.5 (the targets' figure) does not
    if not coco:
        log.info('no APs column: pycocotools is not installed (pip install "mfssd-deploy[train]")')
    for r in runners:
        if r.detector is None or r.facts["weights"] == RANDOM:
            continue
        log.info("accuracy of %s on %d images", r.facts["model"], len(source.records))
        res = evaluate(detector_predictor(r.detector), source, class_names=r.detector.class_names,
                       max_images=max_images, coco=coco, progress=False)  # fmt: skip
        r.facts["map"] = res["voc07_map"]
        r.facts["aps"] = res.get("coco", {}).get("APs")
        r.facts["aitod"] = {k: v for k, v in res.get("coco", {}).items() if k in AITOD_BUCKETS} or None
        r.facts["val"] = {"data": label, "images": res["images"]}


def peak_for(facts: Row, env: dict[str, Any]) -> float | None:
    """The peak a row is read against: its own device's (a GPU row against the GPU's FP32 matmul); on the
    CPU an INT8 row against the INT8 GEMM peak, every other row against the FP32 one."""
    if facts.get("device", "cpu") == "cuda":
        return env.get("peak_fp32_gflops_gpu")
    if str(facts.get("precision", "")).startswith("int8") and env.get("peak_int8_gops"):
        return env.get("peak_int8_gops")
    return env.get("peak_fp32_gflops")


def format_text(result: dict[str, Any]) -> str:
    """The printed report of an --fps run: environment, table, notes, speed ratios, target lines."""
    from mfssd_deploy.bench import report

    env, rows = result["env"], result["rows"]
    ratios = result["speed_ratios"]
    ratio_lines = ["## Speed ratios (same run)", "", report.ratios_markdown(ratios), ""] if ratios else []
    gpu, gpu_peak = ", no GPU", ""
    if env.get("gpu"):
        gpu = (f", GPU {env['gpu']} (sm_{''.join(map(str, env['compute_capability']))}, CUDA {env.get('cuda')}, "
               f"driver {env.get('gpu_driver') or 'unknown'})")  # fmt: skip
    if env.get("peak_fp32_gflops_gpu"):
        gpu_peak = f"; GPU FP32 peak {env['peak_fp32_gflops_gpu']:.0f} GFLOP/s (4096^3 matmul, TF32 off)"
    lines = [
        f"# mfssd-bench --fps: {env['cpu']}, {env['threads']} threads{gpu}",
        f"torch {env['torch']}, onnxruntime {env['onnxruntime']}, tensorrt {env['tensorrt'] or 'not installed'}; "
        f"FP32 peak measured in this run: {env['peak_fp32_gflops']:.0f} GFLOP/s (2048^3 matmul: "
        + ", ".join(f"{k} {v:.0f}" for k, v in env["fp32_matmul_gflops"].items())
        + ")"
        + (
            f"; INT8 peak {env['peak_int8_gops']:.0f} GOP/s (2048^3 u8 x s8: "
            + ", ".join(f"{k} {v:.0f}" for k, v in env["int8_matmul_gops"].items())
            + ")"
            if env.get("peak_int8_gops")
            else ""
        )
        + f"{gpu_peak}; peak RSS {env['peak_rss_mb']:.0f} MB",
        "",
        report.markdown(rows),
        "",
        _notes(rows),
        "",
        *ratio_lines,
        *same_weights_lines(result.get("same_weights", [])),
        "## Targets (docs/benchmarking.md)",
        *(report.Target(**t).line() for t in result["targets"]),
    ]
    return "\n".join(lines)


def same_weights_rows(rows: list[Row]) -> list[dict[str, Any]]:
    """The torchvision pair (--models torchvision-import) in one set's rows: each row of the import against
    torchvision's own model on the same weights, same batch and device, timed in the same set."""
    from mfssd_deploy.bench import report
    from mfssd_deploy.bench.torchvision_pair import PEER

    peers = {(r.get("device", "cpu"), r["batch"]): r for r in rows if r.get("peer") == PEER}
    out = []
    for r in rows:
        vs, peer = r.get("vs_torchvision"), peers.get((r.get("device", "cpu"), r["batch"]))
        if vs is not None and peer is not None:
            out.append({"of": report.label(r), "batch": r["batch"], "device": r.get("device", "cpu"),
                        "images_per_s": r["images_per_s"], "torchvision_images_per_s": peer["images_per_s"],
                        "ratio": r["images_per_s"] / peer["images_per_s"], "detections": vs})  # fmt: skip
    return out


def same_weights_lines(pairs: list[dict[str, Any]]) -> list[str]:
    if not pairs:
        return []
    lines = ["## torchvision ssd300_vgg16 against its import, same weights (same run)", "",
             "| import of the weights | batch | img/s | torchvision img/s | ratio | detections vs torchvision |",
             "|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for p in pairs:
        vs = p["detections"]
        counts = f"{vs['detections']} vs {vs['detections_torchvision']}"
        if "same" in vs:
            said = (f"same detections: {'yes' if vs['same'] else 'NO'} ({counts}, min IoU {vs['min_iou']:.6f}, "
                    f"max score diff {vs['max_score_diff']:.1e})")  # fmt: skip
        else:
            said = f"agreement F1 {vs['f1']:.3f} ({counts} detections)"
        lines.append(f"| {p['of']} | {p['batch']} | {p['images_per_s']:.1f} | {p['torchvision_images_per_s']:.1f} "
                     f"| {p['ratio']:.2f}x | {said} |")  # fmt: skip
    return [*lines, ""]


def _notes(rows: list[Row]) -> str:
    groups = {r["group"] for r in rows}
    notes = ["Latency and stage times are ms per batch (medians); img/s from the median."]
    if groups & {"full", "full-pruned"}:
        notes.append(
            "* random weights: speed only (full-size 300x300 MFSSD-BN; the pruned one keeps the pruned demo model's "
            "per-layer channel fractions, at its parameter ratio, widths rounded to multiples of 8): scores are near "
            "uniform, so every configuration's NMS works at its cap."
        )
    if any(r.get("runtime") for r in rows):
        notes.append("ONNX rows on the CPU name their runtime: onnxruntime, openvino (f32 precision hint), "
                     "openvino-bf16 (its bf16 hint).")  # fmt: skip
    if any(str(r.get("precision", "")).startswith("int8") and r.get("fraction_of_peak") for r in rows):
        notes.append("% peak: INT8 rows of the INT8 GEMM peak, the others of the FP32 peak (bf16 rows too).")
    if "peer" in groups:
        notes.append("Peers run end to end (no stage split).")
    if any(r.get("memory_mb") for r in rows):
        notes.append("mem MB: peak resident memory of a fresh process running only that configuration"
                     + (" (+ GPU: device memory it holds after its runs, above the CUDA context)."
                        if any(r.get("gpu_memory_mb") is not None for r in rows) else "."))  # fmt: skip
    return " ".join(notes)


def write_outputs(result: dict[str, Any], text: str, *, json: str | Path | None = None, csv: str | Path | None = None,
                  markdown: str | Path | None = None, plot: str | Path | None = None) -> None:  # fmt: skip
    """The files of an --fps run, each written atomically: the bench JSON, one CSV line per row, the
    printed report as Markdown, the PNG plot (needs matplotlib)."""
    from mfssd_deploy.bench import report
    from mfssd_deploy.fileio import atomic_path, write_json

    if json:
        write_json(json, result)
    if csv:
        with atomic_path(csv) as tmp:
            tmp.write_text(report.to_csv(result["rows"]))
    if markdown:
        with atomic_path(markdown) as tmp:
            tmp.write_text(text + "\n")
    if plot:
        env = result["env"]
        report.plot(result["rows"], Path(plot), f"mfssd-bench --fps on {env['cpu']} ({env['threads']} threads)")
