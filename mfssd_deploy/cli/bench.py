"""mfssd-bench: speed and accuracy of every artifact, side by side with the peers, in one run.

--fps benchmarks the bundled demo models (trained: accuracy with --val) and the full-size 300x300
MFSSD-BN, unpruned and pruned like the demo model (random weights: speed only), as PyTorch eager,
ONNX Runtime FP32 raw / end2end and INT8 end2end (s8: TensorRT-compatible; u8: x86 CPUs); on a
GPU also PyTorch CUDA, ONNX Runtime's TensorRT/CUDA providers and, with TensorRT installed, INT8 and
FP16 TensorRT engines of every group (built once per GPU and TensorRT version; --no-engines skips
them); engines of your own with --models engines/x.engine.
Peers in the same run, on each device: torchvision ssd300_vgg16 end to end, and eager MFSSD-BN with
the reference per-class greedy NMS loop.

Calls alternate between configurations round by round (A B A B) on the same images; figures are
medians. The machine's FP32 peak is measured in the same run (a large matmul). Artifacts are
exported once into --cache. The targets (docs/benchmarking.md) are printed as PASS/FAIL lines (UNCHECKED
when the run lacks what a target needs), after the INT8/FP32 and pruned/unpruned speed ratios.

--soak N runs N calls per configuration and batch size and reports resident-memory growth.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mfssd_deploy.cli import run_cli
from mfssd_deploy.errors import MfssdError

if TYPE_CHECKING:
    from mfssd_deploy.bench.engines import EngineTarget

log = logging.getLogger("mfssd_deploy")


def _ints(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {text!r}")
    return vals


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    from mfssd_deploy.bench.suite import ALL_FORMATS, GROUPS

    ap = argparse.ArgumentParser(
        prog="mfssd-bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--fps", action="store_true", help="the speed table (images/s, latency, stages, roofline)")
    ap.add_argument("--soak", type=int, metavar="N",
                    help="run N calls per configuration and batch size and report memory growth")  # fmt: skip
    ap.add_argument("--models", type=_names, default=None,
                    help=f"comma-separated groups ({', '.join(GROUPS)}) and/or .pt/.onnx/.engine files "
                         "(default: all four groups; --soak: demo)")  # fmt: skip
    ap.add_argument("--formats", type=_names, default=list(ALL_FORMATS),
                    help=f"artifact kinds per group (default: {','.join(ALL_FORMATS)}; "
                         "the trt-* engines only on a GPU with TensorRT)")  # fmt: skip
    ap.add_argument("--batch", type=_ints, default=[1, 8], help="batch sizes, comma-separated (default 1,8)")
    ap.add_argument("--iters", type=int, help="timed calls per configuration and batch (default: --seconds)")
    ap.add_argument("--seconds", type=float, default=2.0,
                    help="timed work per configuration and batch, at least 3 calls (default 2)")  # fmt: skip
    ap.add_argument("--warmup", type=int, default=2, help="untimed calls before timing (default 2)")
    ap.add_argument("--no-peers", dest="peers", action="store_false", help="skip the peers")
    ap.add_argument("--val", nargs="?", const="synth", metavar="DIR",
                    help="also measure mAP@0.5 / APs of the trained artifacts: on DIR (COCO/VOC/synthetic layout), "
                         "or without DIR on the demo's fresh synthetic validation set")  # fmt: skip
    ap.add_argument("--val-images", type=int, default=200, help="validation images (default 200)")
    ap.add_argument("--images", help="folder of timing images (default: the bundled samples, cycled to fill a batch)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                    help="auto: CPU rows, plus GPU rows when a CUDA GPU is visible")  # fmt: skip
    ap.add_argument("--no-memory", dest="memory", action="store_false",
                    help="skip measuring each configuration's peak memory in a fresh process")  # fmt: skip
    ap.add_argument("--no-engines", dest="engines", action="store_false",
                    help="on a GPU with TensorRT: do not build the groups' engines (minutes each, once per GPU "
                         "and TensorRT version)")  # fmt: skip
    ap.add_argument("--cuda-graphs", action="store_true",
                    help="TensorRT engines: replay CUDA graphs (like trtexec --useCudaGraph)")  # fmt: skip
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for ONNX Runtime and torch (0: all cores)")
    ap.add_argument("--cache", help="where exported artifacts are kept (default ~/.cache/mfssd-deploy/bench)")
    ap.add_argument("--json", help="write the results (the bench JSON contract, docs/architecture.md) to this file")
    ap.add_argument("--csv", help="write one CSV line per row to this file")
    ap.add_argument("--markdown", help="also write the Markdown report to this file")
    ap.add_argument("--plot", help="write a PNG plot (images/s per configuration and batch; stage times)")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    return ap


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
    if torch is not None:
        gpu = torch.cuda.is_available()
    else:
        import onnxruntime as ort

        gpu = bool({"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers()))
    if choice == "cuda" and not gpu:
        raise MfssdError("--device cuda but torch sees no CUDA GPU; use --device cpu")
    if choice == "cuda":
        return ["cuda"]
    return ["cpu", "cuda"] if gpu else ["cpu"]


def _engine_target(devices: list[str], args: argparse.Namespace) -> EngineTarget | None:
    """What to build the groups' TensorRT engines for, or None (no GPU, no TensorRT, or not asked)."""
    from mfssd_deploy.bench.engines import ENGINE_FORMATS, EngineTarget
    from mfssd_deploy.engine_meta import import_tensorrt
    from mfssd_deploy.errors import MissingExtraError
    from mfssd_deploy.exporters.tensorrt_build import gpu_info

    formats = tuple(f for f in args.formats if f in ENGINE_FORMATS)
    if "cuda" not in devices or not formats or not args.engines:
        return None
    try:
        version = str(import_tensorrt().__version__)
        gpu = gpu_info()  # through torch: a lean install (ONNX Runtime GPU only) gets no engine rows
    except MissingExtraError as exc:
        log.info("no TensorRT engine rows: %s", exc)
        return None
    return EngineTarget(gpu, version, (min(args.batch), max(args.batch), max(args.batch)), formats)


def _timing_images(folder: str | None) -> tuple[list[Path], list[Any]]:
    from mfssd_deploy.bundled import sample_images
    from mfssd_deploy.inputs import image_files, load_images

    files = image_files(Path(folder)) if folder else sample_images()
    if not files:
        raise MfssdError(f"--images {folder}: no images found (jpg, png, bmp, ...)")
    files = files[:16]
    arrays, _ = load_images([str(f) for f in files])
    return files, arrays


def _specs(models: list[Any], formats: list[str], devices: list[str], batch: int, threads: int,
           cuda_graphs: bool) -> list[Any]:  # fmt: skip
    from mfssd_deploy.bench.suite import detector_spec

    out = []
    for m in models:
        for fmt, path in m.files.items():
            if m.weights != "as given" and fmt not in formats:
                continue
            for dev in devices:
                gpu_only, cpu_only = fmt == "engine" or fmt.startswith("trt-"), fmt in ("fp32-raw", "int8u8-e2e")
                if (gpu_only and dev != "cuda") or (cpu_only and dev == "cuda"):
                    continue  # u8 INT8 runs on CPUs only; on a GPU the raw graph is not the deployment path
                out.append(detector_spec(path, m.group, fmt, m.weights, dev, batch, threads, cuda_graphs))
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s", stream=sys.stderr)
    if not args.fps and args.soak is None:
        raise MfssdError("choose what to run: --fps (speed table) or --soak N (memory growth over N calls)")
    if args.soak is not None and args.soak < 1:
        raise MfssdError(f"--soak {args.soak}: give a number of calls >= 1")
    if args.plot:  # before the run, not after it
        from mfssd_deploy.errors import require

        require("matplotlib", "train", "--plot")
    from mfssd_deploy.bench.suite import ALL_FORMATS, GROUPS

    unknown = set(args.formats) - set(ALL_FORMATS)
    if unknown:
        raise MfssdError(f"--formats: unknown {sorted(unknown)}; choose from {', '.join(ALL_FORMATS)}")
    from mfssd_deploy.bench import harness, report, suite
    from mfssd_deploy.bench.stats import environment, fp32_peaks, gpu_fp32_peak

    torch = _torch()
    if args.threads and torch is not None:
        torch.set_num_threads(args.threads)
    t_start = time.time()
    groups = args.models or (list(GROUPS) if args.fps else ["demo"])
    _require_group_extras([g for g in groups if g in GROUPS], bool(args.models))
    devices = _devices(args.device)
    cache = Path(args.cache) if args.cache else suite.default_cache()
    image_paths, images = _timing_images(args.images)
    # the synthetic set calibrates the groups' INT8 exports and is the default validation set
    need_data = args.val == "synth" or any(g in GROUPS for g in groups)
    data = suite.synth_data(cache, calib=100, val=args.val_images) if need_data else None
    val_source = _val_source(args.val, data)  # before the long work: a wrong --val DIR fails now
    engines = _engine_target(devices, args) if any(g in GROUPS for g in groups) else None
    models = suite.prepare(groups, cache, data / "train" if data else None, engines)
    specs = _specs(models, args.formats, devices, max(args.batch), args.threads, args.cuda_graphs)
    full = next((m for m in models if m.group == "full"), None)
    if args.fps and args.peers and full is not None:
        specs += suite.peer_specs(full.files["eager"], devices)
    if not specs:
        raise MfssdError("nothing to benchmark: check --models and --formats")
    memory: list[dict[str, Any] | None] = [None] * len(specs)
    if args.fps and args.memory:
        from mfssd_deploy.bench.memory import peak_memory

        log.info("peak memory of each configuration, alone in a fresh process (--no-memory skips)")
        memory = [peak_memory(s, image_paths, args.batch) for s in specs]

    log.info("loading %d configurations (each warmed up at batch %s)", len(specs), args.batch)
    runners = [harness.load_and_warm(partial(suite.build_runner, s), images, args.batch) for s in specs]
    for r, m in zip(runners, memory, strict=True):
        r.facts["memory"] = m

    if args.soak is not None:
        return _soak(runners, images, args)

    env = environment()
    env["threads"] = args.threads or (torch.get_num_threads() if torch is not None else os.cpu_count())
    log.info("measuring the FP32 peak (2048^3 matmul)")
    env["fp32_matmul_gflops"] = fp32_peaks()
    env["peak_fp32_gflops"] = max(env["fp32_matmul_gflops"].values())
    if "cuda" in devices:
        log.info("measuring the GPU's FP32 peak (4096^3 matmul, TF32 off)")
        env["peak_fp32_gflops_gpu"] = gpu_fp32_peak()
    _accuracy(runners, val_source, args.val_images, str(args.val))
    rows: list[dict[str, Any]] = []
    for b in args.batch:
        chunk = harness.batch_of(images, b)
        log.info("timing batch %d: %d configurations interleaved", b, len(runners))
        timed = harness.interleaved(runners, chunk, warmup=args.warmup, iters=args.iters, seconds=args.seconds)
        for r, (times, stages) in zip(runners, timed, strict=True):
            rows.append(harness.make_row(r, b, times, stages, peak_for(r.facts, env)))
    env["peak_rss_mb"] = harness.peak_rss_mb()
    targets, ratios = report.targets(rows, args.batch)
    result = {"env": env, "rows": rows, "targets": [t.__dict__ for t in targets], "ratios": ratios,
              "speed_ratios": report.speed_ratios(rows),
              "settings": {"batches": args.batch, "iters": args.iters, "seconds": args.seconds,
                           "warmup": args.warmup, "timing_images": len(images), "val": args.val},
              "seconds": time.time() - t_start}  # fmt: skip
    text = _text(result)
    print(text)
    _write_outputs(args, result, text)
    return 0


def _require_group_extras(groups: list[str], named: bool) -> None:
    """The groups are checkpoints exported in this run (torch, onnx): without them, fail before the
    synthetic data is generated, and say what runs in a lean install."""
    import importlib

    from mfssd_deploy.cli import pip_extra
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
                f"{pip_extra(('export',))}; or benchmark end2end ONNX files: --models FILE.onnx,..."
            ) from exc


def _val_source(val: str | None, data: Path | None) -> Any:
    if val is None:
        return None
    from mfssd_deploy.data.sources import open_source

    return open_source(data if val == "synth" and data else val, "val")


def _accuracy(runners: list[Any], source: Any, max_images: int, label: str) -> None:
    if source is None:
        return
    from mfssd_deploy.bench.suite import RANDOM
    from mfssd_deploy.evaluation.coco import coco_available
    from mfssd_deploy.evaluation.runner import detector_predictor, evaluate

    coco = coco_available()  # APs needs pycocotools; mAP@0.5 (the targets' figure) does not
    if not coco:
        log.info('no APs column: pycocotools is not installed (pip install "mfssd-deploy[train]")')
    for r in runners:
        if r.detector is None or r.facts["weights"] == RANDOM:
            continue
        if tuple(r.detector.class_names) != tuple(source.class_names):
            raise MfssdError(
                f"--val: {r.facts['model']} detects {list(r.detector.class_names)} but the validation set has "
                f"{list(source.class_names)}; pass --val DIR with a dataset of the model's classes"
            )
        log.info("accuracy of %s on %d images", r.facts["model"], len(source.records))
        res = evaluate(detector_predictor(r.detector), source, max_images=max_images, coco=coco, progress=False)
        r.facts["map"] = res["voc07_map"]
        r.facts["aps"] = res.get("coco", {}).get("APs")
        r.facts["val"] = {"data": label, "images": res["images"]}


def peak_for(facts: dict[str, Any], env: dict[str, Any]) -> float | None:
    """The FP32 peak a row is read against: its own device's (a GPU row against the GPU's matmul)."""
    if facts.get("device", "cpu") == "cuda":
        return env.get("peak_fp32_gflops_gpu")
    return env.get("peak_fp32_gflops")


def _text(result: dict[str, Any]) -> str:
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
        + f"){gpu_peak}; peak RSS {env['peak_rss_mb']:.0f} MB",
        "",
        report.markdown(rows),
        "",
        _notes(rows),
        "",
        *ratio_lines,
        "## Targets (docs/benchmarking.md)",
        *(report.Target(**t).line() for t in result["targets"]),
    ]
    return "\n".join(lines)


def _notes(rows: list[dict[str, Any]]) -> str:
    groups = {r["group"] for r in rows}
    notes = ["Latency and stage times are ms per batch (medians); img/s from the median."]
    if groups & {"full", "full-pruned"}:
        notes.append(
            "* random weights: speed only (full-size 300x300 MFSSD-BN; the pruned one keeps the pruned demo model's "
            "per-layer channel fractions, at its parameter ratio, widths rounded to multiples of 8): scores are near "
            "uniform, so every configuration's NMS works at its cap."
        )
    if "peer" in groups:
        notes.append("Peers run end to end (no stage split).")
    if any(r.get("memory_mb") for r in rows):
        notes.append("mem MB: peak resident memory of a fresh process running only that configuration"
                     + (" (+ GPU: device memory it holds after its runs, above the CUDA context)."
                        if any(r.get("gpu_memory_mb") is not None for r in rows) else "."))  # fmt: skip
    return " ".join(notes)


def _write_outputs(args: argparse.Namespace, result: dict[str, Any], text: str) -> None:
    from mfssd_deploy.bench import report
    from mfssd_deploy.fileio import atomic_path, write_json

    if args.json:
        write_json(args.json, result)
    if args.csv:
        with atomic_path(args.csv) as tmp:
            tmp.write_text(report.to_csv(result["rows"]))
    if args.markdown:
        with atomic_path(args.markdown) as tmp:
            tmp.write_text(text + "\n")
    if args.plot:
        env = result["env"]
        report.plot(result["rows"], Path(args.plot), f"mfssd-bench --fps on {env['cpu']} ({env['threads']} threads)")


def _soak(runners: list[Any], images: list[Any], args: argparse.Namespace) -> int:
    from mfssd_deploy.bench import harness, report
    from mfssd_deploy.fileio import write_json

    out = []
    print("| configuration | batch | calls | seconds | RSS start MB | RSS end MB | growth MB | second-half growth MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in runners:
        for b in args.batch:  # every batch size: an allocator that grows per input shape shows here
            s = harness.soak(r, harness.batch_of(images, b), args.soak)
            s.update({"configuration": report.label({**r.facts, "batch": b}), "batch": b})
            out.append(s)
            print(f"| {s['configuration']} | {b} | {s['iterations']} | {s['seconds']:.1f} | {s['rss_start_mb']:.0f} "
                  f"| {s['rss_end_mb']:.0f} | {s['growth_mb']:+.1f} | {s['growth_second_half_mb']:+.1f} |")  # fmt: skip
    if args.json:
        write_json(args.json, {"soak": out})
    return 0


def entry() -> None:
    sys.exit(run_cli("mfssd-bench", main))


if __name__ == "__main__":
    entry()
